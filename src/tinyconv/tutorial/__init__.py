"""The tutorial written out: its formulas as literal loops, and the explanations built on them."""
