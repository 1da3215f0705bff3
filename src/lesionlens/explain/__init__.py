"""What the network gets wrong and where it looks: top losses, confused pairs, activation maps."""
