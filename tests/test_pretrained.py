"""Resolving pretrained weights: local paths win, hub ids resolve offline-safely, every miss says what to do."""

import pytest

from dynapose4d.errors import DynaPoseError
from dynapose4d.pretrained import PretrainedModel, resolve_pretrained

HUB = PretrainedModel("Some Model", "someone/some-model", "stage.model", "MIT")
MANUAL = PretrainedModel("Manual Model", None, "stage.checkpoint", "Apache-2.0", download="https://example.org/weights")


def test_existing_directories_and_files_are_used_as_they_are(tmp_path, offline_hub):
    (tmp_path / "weights.pth").write_bytes(b"")
    for path in (tmp_path, tmp_path / "weights.pth"):
        model = PretrainedModel("Some Model", str(path), "stage.model", "MIT")
        assert resolve_pretrained(model) == path


def test_a_hub_id_without_network_or_cache_names_repo_key_and_licence(offline_hub):
    with pytest.raises(DynaPoseError) as error:
        resolve_pretrained(HUB)
    message = str(error.value)
    assert "hf download someone/some-model" in message and "stage.model=" in message and "MIT" in message


def test_a_missing_local_path_is_not_mistaken_for_a_hub_id(offline_hub, tmp_path):
    model = PretrainedModel("Some Model", str(tmp_path / "nope" / "deeper"), "stage.model", "MIT")
    with pytest.raises(DynaPoseError, match="stage.model=.*no such directory"):
        resolve_pretrained(model)


@pytest.mark.parametrize("location", [None, "/no/such/file.pth"])
def test_weights_off_the_hub_say_where_to_download_them(location, offline_hub):
    from dataclasses import replace

    with pytest.raises(DynaPoseError) as error:
        resolve_pretrained(replace(MANUAL, location=location))
    assert "https://example.org/weights" in str(error.value) and "stage.checkpoint=" in str(error.value)


def test_a_miss_carries_the_model_and_a_short_reason_for_the_combined_message(offline_hub):
    from dynapose4d.pretrained import MissingWeights

    with pytest.raises(MissingWeights) as error:
        resolve_pretrained(MANUAL)
    assert error.value.model == MANUAL and error.value.reason == "stage.checkpoint is not set"
