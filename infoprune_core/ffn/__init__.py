"""FFN operators: width pruning with a re-fit of the output projection, and low-rank factorisations."""
