"""The text front end against upstream's own, case by case, and its protection rules in isolation.

``data/upstream_text_table.json`` holds what upstream IndexTTS2's ``TextNormalizer`` and
``TextTokenizer`` (indextts/utils/front.py at HEAD, run with WeTextProcessing 1.0.4.1 / pynini
2.1.6 on Linux in a scratch venv; ``data/make_upstream_text_table.py`` says exactly how) return
for 208 texts: upstream's tests/cases.jsonl, tests/regression_test.py and front.py's own case
list, plus our hard cases (numbers, dates, currency, pinyin, ``<char|reading>`` annotations, names,
single characters, a glossary). Each must give upstream's normalized string and, through our
tokenizer and segmentation on the same BPE model, upstream's segments.

The table cases need WeTextProcessing (upstream's Linux normalizer; a dependency on Linux). Its
Chinese grammar is compiled once per machine into the user cache (about a minute), then loads in
about 2 s.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from indextts_trt.runtime.text import TextNormalizer, TextTokenizer, text_to_segments
from indextts_trt.runtime.text import grammars as gr
from indextts_trt.runtime.text.bpe_train import train_bpe_model
from indextts_trt.runtime.text.normalize import respell_pinyin

TABLE = json.loads((Path(__file__).parent / "data" / "upstream_text_table.json").read_text(encoding="utf-8"))
CASES = TABLE["cases"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    p = tmp_path_factory.mktemp("bpe") / "bpe.model"
    train_bpe_model(p, vocab_size=512, seed=0)
    if hashlib.sha256(p.read_bytes()).hexdigest() != TABLE["bpe_sha256"]:
        pytest.fail("the BPE model trained here differs from the one the table was recorded with "
                    "(sentencepiece version?): rerun tests/data/make_upstream_text_table.py")
    return TextTokenizer(p)


@pytest.fixture(scope="module")
def normalizers():
    pytest.importorskip("tn", reason="WeTextProcessing (upstream's Linux normalizer) is not installed")
    plain = TextNormalizer(backend="tn")
    assert plain.grammars is not None and plain.grammars.name.startswith("WeTextProcessing")
    return {False: plain, True: TextNormalizer(glossary=TABLE["glossary"], backend="tn")}


def test_table_covers_what_it_claims():
    sources = {c["source"] for c in CASES}
    assert len(CASES) == 208 and {"upstream tests/cases.jsonl", "upstream tests/regression_test.py",
                                  "upstream indextts/utils/front.py __main__"} <= sources
    assert not any(c.get("unstable") for c in CASES)  # upstream gave the same output under two hash seeds


@pytest.mark.parametrize("case", CASES, ids=[f"{i}:{c['text'][:24]}" for i, c in enumerate(CASES)])
def test_upstream_table(case, normalizers, tok):
    n = normalizers[case["glossary"]]
    if len(case["text"].strip()) > 1:  # a one-character text skips normalization (next check)
        assert n.normalize(case["text"]) == case["normalized"]
    expect = [tok.convert_tokens_to_ids(s) for s in case["segments"]]
    assert text_to_segments(case["text"], n, tok, 120) == expect


# ------------------------------------------------------------------- rules, with a stand-in grammar


class Spy:
    """A grammar that records what it is given and reads digits one by one (like a real one)."""

    def __init__(self, fail: bool = False):
        self.seen: list[str] = []
        self.fail = fail

    def __call__(self, text: str) -> str:
        self.seen.append(text)
        if self.fail:
            raise AssertionError("grammar failure")
        return "".join("零一二三四五六七八九"[int(c)] if c.isdigit() else c for c in text)


def spy_normalizer(glossary=None, fail=False) -> tuple[TextNormalizer, Spy, Spy]:
    n = TextNormalizer(glossary=glossary)
    zh, en = Spy(fail), Spy(fail)
    n._grammars, n._loaded = gr.Grammars("spy", zh, en), True
    return n, zh, en


def test_protected_strings_reach_the_grammar_as_upstream_placeholders():
    n, zh, _ = spy_normalizer()
    out = n.normalize("银<行|hang2>约瑟夫·高登用GPT-5读xuan4和xuan4 ")
    # annotation → PRONPLACEHOLDER, hyphen → <H>, tone pinyin → <pinyin_a>, name → <n_a> (the
    # name pattern runs on over the CJK after the dot: "高登用", as upstream's); rstrip
    assert zh.seen == ["银PRONPLACEHOLDERaPRONPLACEHOLDER<n_a>GPT<H>5读<pinyin_a>和<pinyin_a>"]
    assert out == "银<行|hang2>约瑟夫-高登用GPT-五读XVAN4和XVAN4"


def test_english_path_contraction_tech_terms_and_punctuation():
    n, zh, en = spy_normalizer()
    assert n.normalize("What's F5-TTS: (good)") == "What is F五-TTS, 'good'"
    assert en.seen == ["What is F5<H>TTS: (good)"] and not zh.seen


def test_grammar_failure_keeps_the_text(caplog):
    n, _, _ = spy_normalizer(fail=True)
    with caplog.at_level(logging.WARNING):
        assert n.normalize("It is 5 o'clock") == "It is 5 o'clock"  # upstream: the text as written
        assert n.normalize("我有3个") == "我有3个"  # upstream: "" (drops the sentence); we keep it
    assert caplog.text.count("text normalizer failed") == 2


@pytest.mark.parametrize("pinyin, expect", [("xuan4", "XVAN4"), ("ju4", "JV4"), ("que4", "QVE4"), ("jun1", "JVN1"),
                                            ("jue2", "JVE2"), ("xün2", "XVN2"), ("zhong4", "zhong4"),
                                            ("lv4", "lv4"), ("ji1", "JI1")])
def test_pinyin_respelling(pinyin, expect):
    assert respell_pinyin(pinyin) == expect


def test_glossary_longest_term_first_case_insensitive_per_language():
    """Expected values from upstream's apply_glossary_terms (scratch venv): terms apply in turn,
    longest first, so a shorter term also rewrites a longer one's reading ("PCIE five")."""
    g = {"PCIe": "P C I E", "PCIe 5.0": {"zh": "PCIE 五点零", "en": "PCIE five"}, "Inc.": {"en": "Ink"}}
    n, zh, en = spy_normalizer(glossary=g)
    assert n.normalize("pcie 5.0 and PCIE, Inc.") == "P C I E five and P C I E, Ink"
    assert en.seen == ["P C I E five and P C I E, Ink"]
    # no zh reading: the term itself, as spelled in the glossary
    assert n.normalize("苹果inc.的pcie 5.0") == "苹果Inc.的P C I E 五点零"


def test_glossary_errors_name_the_term_and_file(tmp_path):
    with pytest.raises(ValueError, match=r"term 'C\+\+' must map to a string"):
        TextNormalizer(glossary={"C++": 3})
    bad = tmp_path / "glossary.yaml"
    bad.write_text("C#:\n  fr: do dièse\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"glossary.yaml: term 'C#'"):
        TextNormalizer().load_glossary_yaml(bad)
    good = tmp_path / "good.yaml"
    good.write_text("TTS: T T S\nM.2:\n  en: M dot two\n  zh: M 二\n", encoding="utf-8")
    n = TextNormalizer(glossary={"old": "x"})
    assert n.load_glossary_yaml(good) and n.glossary == {"TTS": "T T S", "M.2": {"en": "M dot two", "zh": "M 二"}}
    assert not n.load_glossary_yaml(tmp_path / "missing.yaml")


def test_single_character_text_is_encoded_as_written(tok):
    n, zh, en = spy_normalizer()
    for text in ("a", " b ", "7", "好"):
        assert text_to_segments(text, n, tok) == [tok.convert_tokens_to_ids(tok.sp.Encode(text, out_type=str))]
    assert not zh.seen and not en.seen  # no normalization, no upper-casing
    assert text_to_segments("ab", n, tok) == [tok.convert_tokens_to_ids(tok.sp.Encode("AB", out_type=str))]


# ------------------------------------------------------------------------------ the grammar cache


def test_grammar_cache_is_built_once_into_place(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("INDEXTTS_TRT_CACHE", str(tmp_path))
    built = []

    def fake_build(cache_dir):
        built.append(Path(cache_dir))
        for f in gr.ZH_FILES:
            p = Path(cache_dir) / f
            if not p.exists():
                p.write_bytes(b"fst")
        return "zh"

    monkeypatch.setattr(gr, "_build_zh", fake_build)
    final = gr.zh_cache_dir()
    assert final.parent == tmp_path and "zh-tn-keep-interjections-erhua" in final.name
    with caplog.at_level(logging.WARNING):
        assert gr.load_tn_zh() == "zh"
    assert "building the Chinese text-normalization grammar" in caplog.text
    assert built[0] != final and built[0].parent == tmp_path  # built in a temporary folder ...
    assert all((final / f).is_file() for f in gr.ZH_FILES)  # ... renamed into place
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    caplog.clear()
    gr.load_tn_zh()
    assert built[1] == final and "building" not in caplog.text  # loaded from the cache


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="backend must be auto, tn or wetext"):
        gr.load_grammars("icu")


def test_named_backend_never_falls_back(monkeypatch, caplog):
    def missing():
        raise ImportError("No module named 'wetext'")

    monkeypatch.setattr(gr, "load_wetext", missing)
    with pytest.raises(ImportError, match="backend 'wetext' is not installed"):
        gr.load_grammars("wetext")
    monkeypatch.setattr(gr, "load_tn", missing)
    assert gr.load_grammars("auto") is None and "normalization disabled" in caplog.text
