"""The case store: the cases a server sees, their labels, exports for training and study statistics."""
