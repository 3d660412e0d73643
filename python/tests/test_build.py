"""How the compiled module was built."""

from __future__ import annotations

from quorumkv import _native


def test_the_module_gets_the_workspace_runtime_setting() -> None:
    # maturin builds inside the repository, so .cargo/config.toml's `--cfg tokio_unstable`
    # reaches the module and its runtime runs without tokio's LIFO slot (a RUSTFLAGS
    # variable would replace the setting and fail this).
    assert _native.runtime_without_lifo_slot()
