"""Knowledge base retrieval: documents, chunks, embeddings, hybrid search and grounding."""
