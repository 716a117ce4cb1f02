"""``resolve_model_dir``: shipped folders by name, local paths first."""

from pathlib import Path

from cadenza.generators.model import WEIGHTS_DIR, resolve_model_dir


def test_a_shipped_folder_name_resolves_under_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir(None) == WEIGHTS_DIR
    assert resolve_model_dir("codec") == WEIGHTS_DIR.parent / "codec"  # shipped, named without a path
    assert resolve_model_dir("nowhere") == Path("nowhere")  # unknown names stay paths (the loader's error names them)
    (tmp_path / "codec").mkdir()
    assert resolve_model_dir("codec") == Path("codec")  # a folder here wins over the shipped one
