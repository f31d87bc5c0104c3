"""Floor 6: the source documents' claims (the catalogue) and their errata report.

One module per source document (:mod:`.damadi`, :mod:`.ganev`, :mod:`.park`, :mod:`.mml`), the entry model
(:mod:`.model`), helpers shared by the encodings (:mod:`.shared`), the registry and runner (:mod:`.catalogue`)
and the report (:mod:`.errata`).
"""
