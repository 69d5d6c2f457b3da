import sys
import textwrap

import pytest

from harness.cli import compose_config
from harness.config import ConfigError
from harness.pipeline import execute
from harness.records.schema import read_records
from providers import registry
from providers.base import MissingExtraError

ADAPTER = '''
"""A third-party adapter, as a user would write it: one small file."""
from providers.base import ChatResult, Provider
from tasks.parsing import format_answer
from tasks.prompts import read_dictionary


class EchoTotal(Provider):
    def __init__(self, bias):
        self.bias = bias

    @property
    def label(self):
        return "echo-total"

    async def chat(self, messages, sampling):
        dictionary = read_dictionary(messages[0].content)
        keys = [k.strip() for m in messages if m.role == "user" for k in m.content.split(",")]
        return ChatResult(content=format_answer(sum(dictionary[k] for k in keys) + self.bias))


def create(config, *, concurrency):
    return EchoTotal(bias=int(config.get("bias", 0)))
'''


@pytest.fixture
def outside_package(tmp_path, monkeypatch):
    """A module that lives outside the project, importable the way an installed one is."""
    package = tmp_path / "site" / "lhe_echo_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(ADAPTER))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield tmp_path / "site"
    sys.modules.pop("lhe_echo_plugin", None)


async def test_an_adapter_given_by_dotted_path_is_found_and_used(outside_package, tmp_path):
    config = compose_config(
        [
            "model=custom",
            "model.provider=lhe_echo_plugin:create",
            "+model.bias=0",
            "task.samples=2",
            "task.turns=3",
        ]
    )
    assert config.model.label == "lhe_echo_plugin_create"
    summary = await execute(config, tmp_path / "run")
    records = read_records(tmp_path / "run")
    assert len(records) == 6 and all(r.answer == r.truth for r in records)
    assert summary.task_accuracy[-1] == 1.0


async def test_an_adapter_registered_by_entry_point_is_found(outside_package, monkeypatch):
    dist = outside_package / "lhe_echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lhe-echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[lhe.providers]\necho = lhe_echo_plugin:create\n")
    assert "echo" in registry.available_providers()
    provider = registry.create_provider("echo", {"bias": 1}, concurrency=1)
    assert provider.label == "echo-total"


def test_unknown_provider_lists_the_allowed_names():
    with pytest.raises(ValueError, match=r"model\.provider: unknown provider 'nope'; allowed: "):
        registry.resolve_factory("nope")


def test_name_collisions_raise():
    with pytest.raises(ValueError, match="already registered"):
        registry.register_provider("simulated")(lambda config, *, concurrency: None)


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[local\]'"):
        registry.create_provider("llama_cpp", {}, concurrency=1)


async def test_a_typo_in_an_adapter_option_is_one_line_naming_the_field(tmp_path):
    config = compose_config(["model=simulated", "+model.pp=0.9"])
    with pytest.raises(ConfigError, match=r"^model\.pp: unknown field"):
        await execute(config, tmp_path / "run")
