"""Text front end: normalization, CJK split, the trained BPE model, segmentation rules, bad input."""

from __future__ import annotations

import pytest

from indextts_trt.runtime.text import (
    TextError,
    TextNormalizer,
    TextTokenizer,
    split_segments,
    text_to_segments,
    tokenize_by_cjk_char,
    use_chinese,
)
from indextts_trt.runtime.config import ConfigError
from indextts_trt.runtime.errors import OptionError
from indextts_trt.runtime.text.bpe_train import train_bpe_model


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    p = tmp_path_factory.mktemp("bpe") / "bpe.model"
    train_bpe_model(p, vocab_size=512, seed=0)
    return TextTokenizer(p)


@pytest.fixture(scope="module")
def norm():
    return TextNormalizer()


def test_bpe_model_conventions(tok, tmp_path):
    assert tok.vocab_size == 512
    assert [tok.sp.IdToPiece(i) for i in range(3)] == ["<s>", "</s>", "<unk>"]
    assert tok.sp.GetPieceSize() == 512 and tok.unk_id == 2
    again = train_bpe_model(tmp_path / "again.model", vocab_size=512, seed=0)
    t2 = TextTokenizer(again)
    assert [t2.sp.IdToPiece(i) for i in range(512)] == [tok.sp.IdToPiece(i) for i in range(512)]


def test_cjk_split_and_upper_case():
    assert tokenize_by_cjk_char("你好世界是 hello world 的中文") == "你 好 世 界 是 HELLO WORLD 的 中 文"


@pytest.mark.parametrize("text, chinese", [("你好", True), ("hello", False), ("123", True), ("a@b.com", True),
                                           ("xuan4 zhong1", True), ("mixed 中文 text", True)])
def test_language_choice(text, chinese):
    assert use_chinese(text) is chinese


@pytest.mark.parametrize("text, expect", [
    ("2024年3月5日，温度-3.5°C", "二零二四年三月五日,温度负三点五摄氏度"),
    ("It cost $12.50.", "It cost twelve point five dollars."),
    ("That's (great)!", "That is 'great'!"),
    ("我爱GPT-5", "我爱GPT-五"),  # upstream (tests/data/upstream_text_table.json): digits in terms are read
])
def test_normalization_table(norm, text, expect):
    assert expect in norm.normalize(text)


@pytest.mark.parametrize("text", [
    "Hello world. This is a test, isn't it? I have 2 cats!",
    "你好世界，今天是2024年3月5日。我很高兴！",
    "Mixed 中文 and English, with numbers 3.14 and emoji 😀🎉.",
    "Tabs\tand\nnewlines\u200band zero-width",
    "Ünïcödé ñ ß ø — Ελληνικά, русский, العربية, हिन्दी",
])
def test_any_text_gives_segments(norm, tok, text):
    segs = text_to_segments(text, norm, tok, 120)
    assert segs and all(1 <= len(s) <= 120 for s in segs)
    assert all(0 <= i < tok.vocab_size for s in segs for i in s)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00\x01\u200b"])
def test_empty_text_is_a_clear_error(norm, tok, text):
    with pytest.raises(TextError, match="empty text"):
        text_to_segments(text, norm, tok)


def test_limits(norm, tok):
    # 600 words: WeTextProcessing's English grammar (as upstream's) takes ~8 ms a word, growing with length
    long = "word " * 600 + "."
    segs = text_to_segments(long, norm, tok, 120)
    assert all(len(s) <= 120 for s in segs) and sum(map(len, segs)) > 600
    with pytest.raises(OptionError, match="601"):
        text_to_segments("hi", norm, tok, 601)


def test_sentence_split_and_merge_rules():
    toks = ["▁A", "B", "C", ".", "▁D", "E", "F", "?", "▁G", "H"]
    # every sentence fits the limit: merged back greedily
    assert split_segments(toks, 120) == [toks]
    # tight limit: split after sentence-final tokens, then merge while <= limit
    assert split_segments(toks, 4) == [["▁A", "B", "C", "."], ["▁D", "E", "F", "?"], ["▁G", "H"]]
    assert split_segments(toks, 8) == [["▁A", "B", "C", ".", "▁D", "E", "F", "?"], ["▁G", "H"]]


def test_quick_streaming_keeps_the_first_segment_short():
    toks = ["▁A", "B", "C", "."] * 4
    # merging starts only once more than quick_streaming_tokens tokens were seen; the half-limit
    # rule (4 + 4 <= 40 / 2) still merges, so use a limit where it does not apply
    assert len(split_segments(toks, 12, quick_streaming_tokens=0)) == 2
    assert split_segments(toks, 12, quick_streaming_tokens=8)[0] == ["▁A", "B", "C", "."]


def test_comma_resplit_and_hard_cut():
    toks = ["▁x"] * 5 + [","] + ["▁y"] * 5 + [","] + ["▁z"] * 5
    segs = split_segments(toks, 7)
    assert all(len(s) <= 7 for s in segs) and sum(map(len, segs)) == len(toks)
    assert segs[0][-1] == ","
    hard = split_segments(["▁q"] * 25, 10)
    assert [len(s) for s in hard] == [10, 1, 10, 4]  # upstream cuts at limit + 1 tokens


def test_apostrophe_after_sentence_end_follows_upstream():
    # upstream appends the following "'" to the sentence and (a no-op `i += 1` in a for loop)
    # also keeps it as the start of the next piece
    toks = ["▁A", "B", ".", "'", "▁C", "D"]
    assert split_segments(toks, 4) == [["▁A", "B", ".", "'"], ["'", "▁C", "D"]]


def test_missing_or_corrupt_bpe_model(tmp_path):
    with pytest.raises(ConfigError, match="not found"):  # the directory's problem, not the text's
        TextTokenizer(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="bad.model"):
        TextTokenizer(bad)
