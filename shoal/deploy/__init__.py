"""Starting and stopping clusters."""
from shoal.deploy.local import LocalCluster

__all__ = ["LocalCluster"]
