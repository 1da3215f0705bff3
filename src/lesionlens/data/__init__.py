"""Reading images and labels: folders, CSV tables, the HAM10000 and ISIC layouts; splits, cache, transforms."""
