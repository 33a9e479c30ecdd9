"""Train a real SentencePiece BPE model offline, for random-weight checkpoints.

The released ``bpe.model`` cannot be downloaded here; this writes one with the same conventions
(``<s>``=0 and ``</s>``=1 double as the GPT's start/stop text tokens, ``<unk>``=2, BPE, no byte
fallback, exactly ``vocab_size`` pieces) from a synthetic corpus we generate deterministically:
common CJK characters (CJK-split as the tokenizer does), English-like words and digits, all
upper-cased as upstream's pre-tokenizer leaves them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

_ONSETS = ["", "B", "C", "D", "F", "G", "H", "J", "K", "L", "M", "N", "P", "QU", "R", "S", "T", "V", "W", "Y",
           "Z", "BR", "CH", "CL", "DR", "FL", "GR", "PL", "PR", "SH", "SL", "SP", "ST", "TH", "TR", "WH"]
_NUCLEI = ["A", "E", "I", "O", "U", "AI", "EA", "EE", "OO", "OU", "IE", "OA", "Y"]
_CODAS = ["", "", "N", "R", "S", "T", "L", "M", "ND", "NG", "RT", "ST", "CK", "TH", "LL", "SS", "X"]
_PUNCT = [".", ",", "?", "!", "'", "-", "…"]
# frequent Chinese characters (numerals first: the zh normalizer writes numbers with them)
_COMMON_ZH = ("零一二三四五六七八九十百千万亿点负的是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就"
              "那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手用主行"
              "方又如前所本见经头面公同已老从动两长知民样现分将外但身些与高意进把法此实回理美月明其种声全工己话"
              "儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电第门相次东政海口使教西再平真听世气信北"
              "少关并内加化由却代军产入先山太水市眼体别处总才场师书比住员笑性通目华报立马命张活难神数件安表原车"
              "白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它"
              "许特觉望直服毛林题建南度统色字请交爱让认算论吃义科怎元社术结功指思非流每青管夫连远资队跟带花快条"
              "院变联言权往展该领传近留红治决周保达办运武半候必城父强步完革深区即求品士转量空甚众技轻程告江语英"
              "基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商片容研像找友孩站广改议形委早房音火际则"
              "首单温度价格摄氏元年月日号今天兴高你好世界")


def _corpus(vocab_size: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    n_cjk = min(3500, max(60, vocab_size // 4))
    common = list(dict.fromkeys(_COMMON_ZH))
    rest = [chr(0x4E00 + i) for i in range(0, 20902, 5) if chr(0x4E00 + i) not in set(common)]
    cjk = (common + rest)[:n_cjk]
    syll = [o + n + c for o in _ONSETS for n in _NUCLEI for c in _CODAS]
    n_words = max(200, vocab_size * 2)
    lens = rng.integers(1, 4, size=n_words)
    words = sorted({"".join(rng.choice(syll, size=k)) for k in lens})
    # Zipf-like frequencies so BPE has frequent merges to learn, like real text
    p = 1.0 / np.arange(1, len(words) + 1) ** 0.9
    p /= p.sum()
    lines = []
    n_lines = max(2000, vocab_size * 3)
    for i in range(n_lines):
        if i % 3 == 0:
            chars = rng.choice(cjk, size=int(rng.integers(4, 16)))
            lines.append(" ".join(chars) + " " + str(rng.choice(_PUNCT)))
        else:
            ws = list(rng.choice(words, size=int(rng.integers(3, 12)), p=p))
            if i % 7 == 0:
                ws.insert(int(rng.integers(0, len(ws))), str(int(rng.integers(0, 10000))))
            lines.append(" ".join(ws) + str(rng.choice(_PUNCT)))
    lines.append(" ".join(cjk))  # every CJK character at least once
    return lines


def train_bpe_model(out_path: str | Path, vocab_size: int, seed: int = 0) -> Path:
    import sentencepiece as spm

    out_path = Path(out_path)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(vocab_size, seed)),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="bpe",
        bos_id=0, eos_id=1, unk_id=2, pad_id=-1,
        bos_piece="<s>", eos_piece="</s>", unk_piece="<unk>",
        character_coverage=1.0,
        byte_fallback=False,
        num_threads=1,  # deterministic
        shuffle_input_sentence=False,
        max_sentence_length=16384,
        minloglevel=2,
    )
    from ..files import write_bytes_atomic

    return write_bytes_atomic(out_path, buf.getvalue())
