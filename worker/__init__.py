"""The arq worker: job functions, the PDF extraction, and the one module that writes job state."""
