"""Regenerate ``upstream_text_table.json``: upstream IndexTTS2's own text front end on our case list.

Not a test, and no upstream code lives here: this runs upstream's ``indextts/utils/front.py``
(``TextNormalizer(enable_glossary=True)`` + ``TextTokenizer``, as ``infer_v2.py`` builds them) from
an upstream checkout, in a scratch venv with upstream's Linux normalizer::

    python3 -m venv /tmp/tn-venv
    /tmp/tn-venv/bin/pip install WeTextProcessing==1.0.4.1 pynini==2.1.6 sentencepiece numpy
    /tmp/tn-venv/bin/python tests/data/make_upstream_text_table.py UPSTREAM_SRC_DIR

``UPSTREAM_SRC_DIR`` holds ``indextts/utils/{front,common}.py`` from upstream HEAD; ``common.py``
imports torch and torchaudio at module level but the text functions use neither, so empty stand-in
modules are put first on ``sys.path``. The BPE model is ours (``train_bpe_model(vocab_size=512,
seed=0)``, the one ``tests/test_text_normalize.py`` trains): the released ``bpe.model`` cannot be
downloaded; our tokenizer and segmentation are compared on the same model.
Each case is run under two hash seeds (upstream dedupes placeholders through ``set``); a case whose
output depends on the seed is recorded as ``"unstable": true``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# Inputs from upstream's own tests (tests/cases.jsonl, tests/regression_test.py, the case list in
# indextts/utils/front.py's __main__) are read from the checkout; these are ours.
HARD_CASES = [
    # numbers, units, math (zh)
    "我有3个苹果", "温度-3.5°C", "圆周率是3.14159", "1/3的人同意", "50%的概率", "第1名", "1,234,567人",
    "0.5公斤", "跑了100米", "重3kg", "今天25℃", "1+1=2", "3-2=1", "10.5%的增长", "负数-7", "约2万元",
    "2.5平方米", "第2024届", "3:2获胜", "12.30元",
    # dates, times
    "2024年3月5日", "2024-03-05", "2024/3/5", "3月5日下午3:30", "时间12:05:33", "晚上8:00见",
    "1999年", "90年代", "2025年01月11日 20:00", "2000年1月1日0点",
    # currency
    "¥12.50", "价格是¥1,299", "花了100元", "$100美元", "€20欧元", "£5", "12.5美元", "US$3.99",
    "It cost $12.50.", "It costs €20 or £5.",
    # phone numbers, codes
    "电话13812345678", "邮编100080", "房间号302", "打110报警", "电话：135-4567-8900",
    # English
    "On 3/5/2024 it cost $12.50. Dr. Smith has 2 cats.", "I was born in 1990.", "The 2nd and 3rd place.",
    "It's 5:30 PM.", "He ran 5 km in 20 min.", "Call 555-1234 now.", "version 2.0.1", "50% off today",
    "the 1990s", "$1.5 million", "Mr. and Mrs. Jones", "email me at test@example.com",
    "That's (great)!", "I can't do it; won't you?", "3 x 4 = 12", "-5 degrees", "1/2 cup", "No. 7",
    "A1 B2 C3", "GPT-5 and F5-TTS are models.", "Fish-Speech uses 4 GPUs.", "CosyVoice-2 vs IndexTTS-2.",
    "Hello world. This is a test, isn't it? I have 2 cats!", "WHAT IS THIS?", "ok",
    # mixed
    "我爱GPT-5", "今天用iPhone 15拍照", "Python 3.11发布了", "AI技术", "我的email是a@b.com",
    "这个APP很好用", "他说：“OK！”", "打开Wi-Fi设置", "用Node.js写代码", "下载v1.2.3版本",
    "Mixed 中文 and English, with numbers 3.14", "COVID-19疫情", "小米MIX 4手机",
    # pinyin with tones
    "ni3 dao4 di3 xing2 bu5 xing2 a5？", "xuan4", "ju4子", "qu4哪里", "lv4色", "nv3人", "nü3人",
    "这个字读zhong4", "jue2定", "xue2习", "yun4动", "用beta1测试", "ma1 ma5 ma3 ma4",
    # <char|reading> annotations
    "我们<行|hang2>业", "<重|chong2>新开始", "银<行|HANG2>在哪里", "<长|zhang3>大了123", "他<得|dei3>去",
    "<乐|yue4>曲2首", "I <read|red> the book 2 times", "<了|liao3>解<了|le5>",
    # names
    "克里斯托弗·诺兰", "蒂姆·库克", "玛丽·居里1867年出生", "让-雅克·卢梭", "诺兰—执导", "李·白",
    # single characters
    "a", "A", "好", "1", "?", " b ", "7", "。", "x", "Q",
    # punctuation, interjections, erhua, scripts
    "只有,,,才是最好的", "这酒...里...有毒...", "……", "嗯嗯，啊哈", "一会儿", "哪儿好玩儿", "呃，嗯，我想想",
    "這是繁體字", "ＡＢＣ１２３", "😀好开心", "第一行\n第二行", "tab\t分隔", "（括号）【方括号】《书名》",
    "“引号”和‘单引号’", "a～b", "——破折号",
]

GLOSSARY = {"M.2": {"en": "M dot two", "zh": "M 二"}, "PCIe 5.0": {"en": "PCIE five", "zh": "PCIE 五点零"},
            "C++": {"en": "C plus plus", "zh": "C 加加"}, "C#": "C sharp", "TTS": "T T S", "Inc.": {"en": "Ink"}}
GLOSSARY_CASES = ["Samsung 9100 PRO PCIe 5.0 SSD M.2, $139.99", "我用C++和C#写TTS", "Apple Inc. makes M.2 drives",
                  "pcie 5.0 很快", "tts is fun"]


def upstream_inputs(src: Path) -> list[tuple[str, str]]:
    import ast

    out = []
    for line in (src / "tests" / "cases.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(("upstream tests/cases.jsonl", json.loads(line)["text"]))
    tree = ast.parse((src / "tests" / "regression_test.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # text = "..." (optionally .replace("\n", ""))
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "text":
            out.append(("upstream tests/regression_test.py", eval(compile(ast.Expression(node.value), "r", "eval"))))
    tree = ast.parse((src / "indextts" / "utils" / "front.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # cases = [...] in __main__
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "cases":
            out += [("upstream indextts/utils/front.py __main__", ast.literal_eval(c)) for c in node.value.elts]
    return out


WORKER = r'''
import json, sys
sys.path[:0] = [sys.argv[1] + "/_stubs", sys.argv[1]]
from indextts.utils.front import TextNormalizer, TextTokenizer
cases, bpe, glossary = json.load(open(sys.argv[2])), sys.argv[3], json.loads(sys.argv[4])
plain = TextNormalizer(enable_glossary=True)
gl = TextNormalizer(enable_glossary=True)
gl.load_glossary(glossary)
toks = {False: TextTokenizer(bpe, plain), True: TextTokenizer(bpe, gl)}
out = []
for c in cases:
    t = toks[c["glossary"]]
    pieces = t.tokenize(c["text"])
    out.append({"normalized": t.normalizer.normalize(c["text"]),
                "segments": t.split_segments(pieces, max_text_tokens_per_segment=120)})
json.dump(out, sys.stdout, ensure_ascii=False)
'''


def main(src: Path) -> None:
    sys.path.insert(0, str(REPO.parent))
    stubs = src / "_stubs"
    for mod in ("torch", "torchaudio"):
        (stubs / mod).mkdir(parents=True, exist_ok=True)
    (stubs / "torch" / "__init__.py").write_text("class Tensor: pass\n")
    (stubs / "torchaudio" / "__init__.py").write_text("__version__ = '2.8.0'\n")
    cases = [{"source": s, "text": t, "glossary": False} for s, t in upstream_inputs(src)]
    cases += [{"source": "hard case", "text": t, "glossary": False} for t in HARD_CASES]
    cases += [{"source": "hard case (glossary)", "text": t, "glossary": True} for t in GLOSSARY_CASES]
    with tempfile.TemporaryDirectory() as tmp:
        bpe = Path(tmp) / "bpe.model"
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                        "from bpe_train import train_bpe_model; train_bpe_model(sys.argv[2], 512, 0)",
                        str(REPO / "runtime" / "text"), str(bpe)], check=True)
        (Path(tmp) / "cases.json").write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
        runs = []
        for seed in ("1", "2"):
            env = dict(os.environ, PYTHONHASHSEED=seed)
            res = subprocess.run([sys.executable, "-c", WORKER, str(src), str(Path(tmp) / "cases.json"), str(bpe),
                                  json.dumps(GLOSSARY, ensure_ascii=False)], env=env, check=True,
                                 capture_output=True, text=True)
            runs.append(json.loads(res.stdout))
        bpe_sha = hashlib.sha256(bpe.read_bytes()).hexdigest()
    for c, a, b in zip(cases, *runs):
        c.update(a)
        if a != b:
            c["unstable"] = True
    table = {"produced_by": "tests/data/make_upstream_text_table.py: upstream index-tts HEAD "
                            "indextts/utils/front.py, WeTextProcessing 1.0.4.1, pynini 2.1.6, Linux",
             "bpe_model": "train_bpe_model(vocab_size=512, seed=0)", "bpe_sha256": bpe_sha,
             "glossary": GLOSSARY, "cases": cases}
    (HERE / "upstream_text_table.json").write_text(json.dumps(table, ensure_ascii=False, indent=1) + "\n",
                                                   encoding="utf-8")
    print(f"{len(cases)} cases, {sum(bool(c.get('unstable')) for c in cases)} unstable")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
