"""Quiet third-party library logging (progress bars, load reports, deprecation notes) in interactive tools.

Not the bot's `/quiet` mode: this only keeps transformers, tokenizers and
bitsandbytes from printing over a terminal chat or a check's report.
"""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # bitsandbytes (imported by peft) warns at import that an optional CPU kernel
    # package is missing; nothing here uses 4-bit kernels on a CPU.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
