"""Export of compressed models to other engines' formats (GGUF for llama.cpp).

`engines_for` and `plan_export` need no extra package; `export_gguf` needs the `gguf` extra.
"""
