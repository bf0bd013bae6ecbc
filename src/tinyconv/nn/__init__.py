"""The network itself: fast functions over whole batches, the layers over them, losses."""
