"""Starting and stopping clusters: `Cluster` (the base of cluster managers), `SpecCluster`,
`LocalCluster`, `SubprocessCluster`, `SSHCluster`, `Adaptive`."""

from shoal.deploy.adaptive import Adaptive
from shoal.deploy.cluster import Cluster
from shoal.deploy.local import LocalCluster
from shoal.deploy.spec import ProcessInterface, SpecCluster
from shoal.deploy.ssh import SSHCluster
from shoal.deploy.subprocess import SubprocessCluster

__all__ = ["Adaptive", "Cluster", "LocalCluster", "ProcessInterface", "SSHCluster", "SpecCluster", "SubprocessCluster"]
