"""Data quality: is each image usable, and is the data set sound?

    assess_image(rgb, original_size) -> [ImageProblem]   quality.image (NumPy + Pillow only: the server's)
    check_images(table, embeddings=None) -> CheckResult  quality.check (any ImageTable, e.g. a case store's)
    check_path(data, bundle=..., weights=...)            quality.check (reads a path; `lesionlens check`)
    write_check_report(result, out) -> html, csv         quality.report
    check_split / check_against_training / enforce       quality.leakage (the gate of train and evaluate)

Nothing is imported here, so that ``lesionlens.quality.image`` stays importable without the
`train` extra.
"""
