"""universal_embedding: universal image embeddings on UnED, in JAX."""
