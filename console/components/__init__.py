"""Pure builders: evaluated results or frames in, Dash components and figures out."""
