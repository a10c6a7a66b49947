"""Regrading a class locally from Gradescope's "Export Submissions" (`python -m autograder regrade`,
`merge`; README.md, "Regrading a class"):

    export.py    the export: submission_metadata.yml (a strict parser of its YAML), the folders, shards
    store.py     the output folder: atomic writes, what is done (resume), the manifest
    batch.py     the gradings: one `python -m autograder container` process each, N at a time, timeouts
    table.py     grades.csv, summary.txt, summary.png
    merge.py     the shards' folders joined into one
    commands.py  the two commands: input checks and exit statuses
"""
