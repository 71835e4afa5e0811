"""Starting and stopping clusters: `SpecCluster`, `LocalCluster`, `Adaptive`."""
from shoal.deploy.adaptive import Adaptive
from shoal.deploy.local import LocalCluster
from shoal.deploy.spec import ProcessInterface, SpecCluster

__all__ = ["Adaptive", "LocalCluster", "ProcessInterface", "SpecCluster"]
