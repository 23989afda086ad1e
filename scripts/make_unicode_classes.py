"""Write src/airoboros_ggml/tokenizer/unicode_classes.json: the L/N/P code point ranges of this Python's Unicode.

The BPE pre-tokenizers need them at every start; reading them is ~100x faster than scanning unicodedata.
Run with the Python whose Unicode version users most likely have (the file names its version; other versions
scan at start-up).
"""

import json
import unicodedata

from airoboros_ggml.tokenizer.pretokenize import UNICODE_TABLE, category_ranges

if __name__ == "__main__":
    table = {"unidata_version": unicodedata.unidata_version, **category_ranges()}
    UNICODE_TABLE.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    print(f"wrote {UNICODE_TABLE} (Unicode {unicodedata.unidata_version})")
