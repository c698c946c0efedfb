"""AIOS inference server: the model runtime (Ollama and OpenAI-compatible backends, metering)."""
