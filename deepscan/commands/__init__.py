"""One module per CLI command; each imports TensorFlow only when it runs."""
