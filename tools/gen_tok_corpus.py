#!/usr/bin/env python3
"""Writes tests/tok/corpus/mixed.txt: >= 100 KB of synthetic mixed text for tokenizer tests.

Deterministic (fixed seed); all text is made up here: pseudo-words from syllables, numbers,
code-like lines, CJK, emoji, combining marks, odd white space. No third-party text.
Usage: tools/gen_tok_corpus.py > tests/tok/corpus/mixed.txt
"""
import random

rng = random.Random(20240601)
SYL = ["ka", "ro", "mi", "ten", "sha", "lo", "ve", "qu", "ix", "dor", "an", "el", "th", "str",
       "oo", "ea", "ph", "ny", "zu", "bre", "ght", "ing", "tion", "ed", "er", "s"]
WORDS = ["the", "and", "of", "to", "a", "in", "is", "it", "you", "that", "was", "for", "on",
         "are", "with", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by"]
CONTR = ["it's", "don't", "I'm", "we're", "they've", "she'll", "he'd", "IT'S", "You'RE",
         "can't", "won't", "y'all", "o'clock", "rock'n'roll"]
CJK = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 400, 7))
KANA = "".join(chr(c) for c in range(0x3041, 0x3097))
HANGUL = "".join(chr(c) for c in range(0xAC00, 0xAC00 + 300, 11))
CYR = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗ"
GREEK = "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΣΩάέήίόύώ"
ARABIC = "".join(chr(c) for c in range(0x0627, 0x064A))
DEVA = "".join(chr(c) for c in range(0x0905, 0x0939))
EMOJI = ["😀", "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🧪", "🚀", "☕", "1️⃣", "🏳️‍🌈"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "A\u030a", "\u1100\u1161",
             "c\u0327", "u\u031b\u0301", "i\u0307", "\u0041\u0300\u0316"]
SPACES = [" ", "  ", "\t", "   ", "\u00a0", "\u3000", "\u2003", " \t ", "\u200b"]
PUNCT = list(".,;:!?-—–()[]{}<>\"'/\\@#$%^&*_+=|~`…«»„“”‘’¿¡")


def word():
    r = rng.random()
    if r < 0.45:
        w = rng.choice(WORDS)
    elif r < 0.8:
        w = "".join(rng.choice(SYL) for _ in range(rng.randint(1, 4)))
    elif r < 0.85:
        w = rng.choice(CONTR)
    elif r < 0.9:
        w = str(rng.randint(0, 10 ** rng.randint(1, 9)))
    elif r < 0.93:
        w = "%d.%02d" % (rng.randint(0, 9999), rng.randint(0, 99))
    else:
        w = rng.choice(COMBINING) + "".join(rng.choice(SYL) for _ in range(2))
    c = rng.random()
    if c < 0.1:
        w = w.capitalize()
    elif c < 0.13:
        w = w.upper()
    return w


def sentence():
    ws = [word() for _ in range(rng.randint(3, 18))]
    out = ws[0].capitalize()
    for w in ws[1:]:
        if rng.random() < 0.08:
            out += rng.choice(PUNCT[:4])
        out += (" " if rng.random() < 0.95 else rng.choice(SPACES)) + w
    return out + rng.choice([".", ".", ".", "!", "?", "...", ":"])


def foreign():
    pick = rng.choice([CJK, KANA, HANGUL, CYR, GREEK, ARABIC, DEVA])
    n = rng.randint(2, 24)
    s = "".join(rng.choice(pick) for _ in range(n))
    if pick in (CYR, GREEK, ARABIC, DEVA, HANGUL) and rng.random() < 0.7:
        k = rng.randint(1, n - 1)
        s = s[:k] + " " + s[k:]
    return s


def code():
    name = "".join(rng.choice(SYL) for _ in range(2))
    forms = [
        "def %s(x, y=%d):\n    return x * y + %d\n" % (name, rng.randint(0, 99), rng.randint(0, 9)),
        "for (int i = 0; i < %d; i++) {\n\tsum += a[i];\n}\n" % rng.randint(1, 999),
        "    if %s != None and len(%s) > %d:  # comment\n" % (name, name, rng.randint(0, 9)),
        '{"%s": [%d, %d.%d, true, null], "k": "v\\n"}\n' % (name, rng.randint(0, 9),
                                                             rng.randint(0, 9), rng.randint(0, 9)),
        "https://example.org/%s?q=%d&r=%s#frag\n" % (name, rng.randint(0, 9999), name),
        "<div class=\"%s\">%s</div>\n" % (name, name.upper()),
        "$ ls -la /usr/%s | grep -v '^d' >> out.txt\n" % name,
        "x_%s = 0x%X; y = 1e-%d; z = %s_%s\n" % (name, rng.randint(0, 65535), rng.randint(1, 9),
                                                 name, name),
    ]
    return rng.choice(forms)


parts = []
size = 0
while size < 120_000:
    r = rng.random()
    if r < 0.55:
        p = " ".join(sentence() for _ in range(rng.randint(1, 5)))
    elif r < 0.7:
        p = sentence() + " " + foreign() + " " + sentence()
    elif r < 0.8:
        p = code().rstrip("\n")
    elif r < 0.87:
        p = " ".join(rng.choice(EMOJI) + word() for _ in range(rng.randint(1, 6)))
    elif r < 0.93:
        p = rng.choice(SPACES) * rng.randint(1, 4) + sentence() + rng.choice(SPACES) * rng.randint(1, 3)
    else:
        p = "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 12))) + word()
    sep = rng.choice(["\n", "\n", "\n\n", "\n\n", " \n", "\n\n\n", "\r\n", "\n   \n"])
    parts.append(p + sep)
    size += len((p + sep).encode("utf-8"))
print("".join(parts), end="")
