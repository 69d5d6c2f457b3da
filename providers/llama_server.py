"""llama.cpp's OpenAI-compatible server, started with the load settings of this project.

    python -m providers.llama_server --model PATH --host 127.0.0.1 --port 8080

Takes exactly the arguments of ``python -m llama_cpp.server``. The difference: the model is
loaded without llama.cpp's extra CPU buffer types (``extra_buffers`` in
:mod:`providers.llama_cpp`), whose matrix kernels crash llama-cpp-python 0.3.36 on some x86
CPUs at the first request.
"""

from __future__ import annotations

import runpy

import llama_cpp.llama_cpp as binding

from providers.llama_cpp import _extra_buffers


def main() -> None:
    """Run the server until it is stopped."""
    with _extra_buffers(binding, False):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
