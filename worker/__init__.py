"""One Inference gRPC worker per model: llama.cpp generation of a grammar-forced verdict."""
