"""The quick-start example from the README: a futures workload on a default Client()."""

from shoal import Client


def inc(x):
    return x + 1


if __name__ == "__main__":
    client = Client()  # no arguments: starts a LocalCluster on this machine
    futures = client.map(inc, range(1000))
    print(sum(client.gather(futures)))
    client.close()
