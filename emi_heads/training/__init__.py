"""Training one head: configs, data in memory, losses, the SGD loop, run folders."""
