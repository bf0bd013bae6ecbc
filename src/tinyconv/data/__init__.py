"""Where images come from: IDX files, known datasets, image folders, batches."""
