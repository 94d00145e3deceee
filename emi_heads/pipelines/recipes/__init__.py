"""Recipes: each published EMI system whole, from the media to the submission (`emi recipe`)."""
