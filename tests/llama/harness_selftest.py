#!/usr/bin/env python3
"""Checks the llama.cpp oracle itself before any GGUF test trusts it.

Runs smelt-llama-harness and hf-tokenize.mjs on inputs made here, with
expected results that do not come from either: IEEE half/bfloat16 bit
patterns written out by hand, a Q8_0 block computed from ggml's published
formula, logits of a llama model whose layers are all zero (so the logits are
output @ rms_norm(embedding), computed here), LoRA deltas added by hand,
token ids read from the vocabulary, and a GGUF dump compared with what this
script wrote. The GGUF writer below is a small one of our own (GGUF v3, from
the format description), independent of smelt's.

Standard library only. Prints one line per check and "N passed, M failed".
"""

import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys

# ---------------------------------------------------------------------------
# a minimal GGUF v3 writer

GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, \
    GGUF_STR, GGUF_ARR, GGUF_U64, GGUF_I64, GGUF_F64 = range(13)
SCALAR_FMT = {GGUF_U8: '<B', GGUF_I8: '<b', GGUF_U16: '<H', GGUF_I16: '<h',
              GGUF_U32: '<I', GGUF_I32: '<i', GGUF_F32: '<f', GGUF_BOOL: '<?',
              GGUF_U64: '<Q', GGUF_I64: '<q', GGUF_F64: '<d'}
TYPE_NAME = {GGUF_U8: 'u8', GGUF_I8: 'i8', GGUF_U16: 'u16', GGUF_I16: 'i16',
             GGUF_U32: 'u32', GGUF_I32: 'i32', GGUF_F32: 'f32', GGUF_BOOL: 'bool',
             GGUF_STR: 'str', GGUF_ARR: 'arr', GGUF_U64: 'u64', GGUF_I64: 'i64',
             GGUF_F64: 'f64'}
GGML_F32 = 0
ALIGN = 32


def _str(b):
    if isinstance(b, str):
        b = b.encode('utf-8')
    return struct.pack('<Q', len(b)) + b


def _value(vtype, value):
    if vtype == GGUF_STR:
        return _str(value)
    if vtype == GGUF_ARR:
        etype, items = value
        out = struct.pack('<IQ', etype, len(items))
        return out + b''.join(_value(etype, v) for v in items)
    return struct.pack(SCALAR_FMT[vtype], value)


def write_gguf(path, kvs, tensors):
    """kvs: [(key, type, value)], arrays as (GGUF_ARR, (elem_type, [items]));
    tensors: [(name, ne list, list of float32 values)], all F32."""
    head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        head += _str(key) + struct.pack('<I', vtype) + _value(vtype, value)
    data = b''
    for name, ne, values in tensors:
        assert len(values) == math.prod(ne), name
        head += _str(name) + struct.pack('<I', len(ne))
        head += b''.join(struct.pack('<Q', n) for n in ne)
        head += struct.pack('<IQ', GGML_F32, len(data))
        data += struct.pack('<%df' % len(values), *values)
        data += b'\0' * (-len(data) % ALIGN)
    head += b'\0' * (-len(head) % ALIGN)
    with open(path, 'wb') as f:
        f.write(head + data)
    return len(head)


# ---------------------------------------------------------------------------
# a tiny llama

N_EMBD, N_HEAD, N_HEAD_KV, N_FF, N_LAYER, N_VOCAB = 64, 4, 2, 96, 2, 48
EPS = 1e-5


def llama_hparams(vocab_size=None):
    kvs = [('general.architecture', GGUF_STR, 'llama'),
           ('general.name', GGUF_STR, 'harness selftest'),
           ('llama.context_length', GGUF_U32, 256),
           ('llama.embedding_length', GGUF_U32, N_EMBD),
           ('llama.block_count', GGUF_U32, N_LAYER),
           ('llama.feed_forward_length', GGUF_U32, N_FF),
           ('llama.attention.head_count', GGUF_U32, N_HEAD),
           ('llama.attention.head_count_kv', GGUF_U32, N_HEAD_KV),
           ('llama.attention.layer_norm_rms_epsilon', GGUF_F32, EPS),
           ('llama.rope.dimension_count', GGUF_U32, N_EMBD // N_HEAD)]
    if vocab_size is not None:
        kvs.append(('llama.vocab_size', GGUF_U32, vocab_size))
    return kvs


def tiny_llama(rng, zero_layers):
    """(kvs, tensors, weights); weights keeps what the reference needs."""
    def rand(n, scale):
        return [rng.uniform(-scale, scale) for _ in range(n)]

    def layer(n, scale):
        return [0.0] * n if zero_layers else rand(n, scale)

    # a vocabulary without a tokenizer: llama.cpp adds dummy tokens
    kvs = llama_hparams(N_VOCAB) + [('tokenizer.ggml.model', GGUF_STR, 'none')]
    embd = rand(N_EMBD * N_VOCAB, 1.0)
    norm = [rng.uniform(0.5, 1.5) for _ in range(N_EMBD)]
    output = rand(N_EMBD * N_VOCAB, 0.5)
    n_kv = N_EMBD // N_HEAD * N_HEAD_KV
    tensors = [('token_embd.weight', [N_EMBD, N_VOCAB], embd),
               ('output_norm.weight', [N_EMBD], norm),
               ('output.weight', [N_EMBD, N_VOCAB], output)]
    for i in range(N_LAYER):
        p = 'blk.%d.' % i
        tensors += [(p + 'attn_norm.weight', [N_EMBD], [1.0] * N_EMBD),
                    (p + 'attn_q.weight', [N_EMBD, N_EMBD], layer(N_EMBD * N_EMBD, 0.2)),
                    (p + 'attn_k.weight', [N_EMBD, n_kv], layer(N_EMBD * n_kv, 0.2)),
                    (p + 'attn_v.weight', [N_EMBD, n_kv], layer(N_EMBD * n_kv, 0.2)),
                    (p + 'attn_output.weight', [N_EMBD, N_EMBD], layer(N_EMBD * N_EMBD, 0.2)),
                    (p + 'ffn_norm.weight', [N_EMBD], [1.0] * N_EMBD),
                    (p + 'ffn_gate.weight', [N_EMBD, N_FF], layer(N_EMBD * N_FF, 0.2)),
                    (p + 'ffn_up.weight', [N_EMBD, N_FF], layer(N_EMBD * N_FF, 0.2)),
                    (p + 'ffn_down.weight', [N_FF, N_EMBD], layer(N_FF * N_EMBD, 0.2))]
    return kvs, tensors, {'embd': embd, 'norm': norm, 'output': output}


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def f32_list(values):
    return list(struct.unpack('<%df' % len(values), struct.pack('<%df' % len(values), *values)))


def matvec(m, rows, cols, x):
    """m stored as ggml [cols, rows] (ne0 = cols): row r is m[r*cols:(r+1)*cols]."""
    return [sum(m[r * cols + c] * x[c] for c in range(cols)) for r in range(rows)]


def zero_layer_logits(w, token):
    """With every layer weight zero, attention and FFN add nothing: the
    residual stream is the token's embedding."""
    x = f32_list(w['embd'][token * N_EMBD:(token + 1) * N_EMBD])
    mean = sum(v * v for v in x) / N_EMBD
    scale = 1.0 / math.sqrt(mean + EPS)
    h = [v * scale * g for v, g in zip(x, f32_list(w['norm']))]
    return matvec(f32_list(w['output']), N_VOCAB, N_EMBD, h), h


# ---------------------------------------------------------------------------
# the checks

class Checker:
    def __init__(self, args):
        self.args = args
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=''):
        if ok:
            self.passed += 1
            print('ok - %s' % name)
        else:
            self.failed += 1
            print('FAIL - %s%s' % (name, (': ' + detail) if detail else ''))
        sys.stdout.flush()

    def harness(self, *argv, stdin=b''):
        p = subprocess.run([self.args.harness] + [str(a) for a in argv], input=stdin,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return p.returncode, p.stdout, p.stderr.decode('utf-8', 'replace')

    def harness_json(self, name, *argv, stdin=b''):
        rc, out, err = self.harness(*argv, stdin=stdin)
        if rc != 0:
            self.check(name, False, 'exit %d: %s' % (rc, err[-2000:]))
            return None
        return json.loads(out)

    def work(self, name):
        return os.path.join(self.args.workdir, name)


def quantize(c, type_name, values, *extra):
    n = len(values)
    rc, out, err = c.harness('quantize', type_name, 1, n, *extra,
                             stdin=struct.pack('<%df' % n, *values))
    if rc != 0:
        raise RuntimeError('quantize %s: exit %d: %s' % (type_name, rc, err))
    return out


def check_f16(c):
    # value -> IEEE binary16 bits, round to nearest even
    cases = [(1.0, 0x3c00), (-2.0, 0xc000), (0.0, 0x0000), (-0.0, 0x8000),
             (65504.0, 0x7bff),           # largest finite
             (65520.0, 0x7c00),           # halfway to the next: rounds to inf
             (2.0 ** -24, 0x0001),        # smallest subnormal
             (2.0 ** -25, 0x0000),        # half of it: tie to even (0)
             (3 * 2.0 ** -25, 0x0002),    # 1.5 ulp: tie to even (2)
             (2.0 ** -14, 0x0400),        # smallest normal
             (1.0 + 2.0 ** -11, 0x3c00),  # tie, even below
             (1.0 + 3 * 2.0 ** -11, 0x3c02),  # tie, even above
             (0.1, 0x2e66), (float('inf'), 0x7c00)]
    values = [v for v, _ in cases]
    want = [b for _, b in cases]
    for extra in ([], ['--ref-convert']):
        got = list(struct.unpack('<%dH' % len(values), quantize(c, 'f16', values, *extra)))
        bad = ['%r: %04x != %04x' % (v, g, w) for v, g, w in zip(values, got, want) if g != w]
        c.check('quantize f16 %s bit patterns' % ' '.join(extra), not bad, '; '.join(bad))


def bits_to_f32(u):
    return struct.unpack('<f', struct.pack('<I', u))[0]


def check_bf16(c):
    # float32 bits -> bfloat16 bits, round to nearest even, no flushing
    cases = [(0x3f800000, 0x3f80), (0x3f808000, 0x3f80),  # tie, even below
             (0x3f818000, 0x3f82),                        # tie, even above
             (0x3f808001, 0x3f81), (0x3f807fff, 0x3f80),
             (0xbf818000, 0xbf82), (0x00018000, 0x0002),  # subnormal tie
             (0x7f7fffff, 0x7f80),                        # max float rounds to inf
             (0x7f800000, 0x7f80)]
    values = [bits_to_f32(u) for u, _ in cases]
    for extra in ([], ['--ref-convert']):
        got = list(struct.unpack('<%dH' % len(values), quantize(c, 'bf16', values, *extra)))
        bad = ['%08x: %04x != %04x' % (u, g, w) for (u, w), g in zip(cases, got) if g != w]
        c.check('quantize bf16 %s round to nearest even' % ' '.join(extra), not bad, '; '.join(bad))


def round_half_away(x):
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def check_q8_0(c):
    # ggml's reference Q8_0 (published formula): d = amax / 127 and
    # q = roundf(x * (1/d)), all in float32; the block is fp16(d) then 32 int8
    # amax 127 makes d = 1, so the x.5 values are exact ties, which roundf
    # takes away from zero (Python's round() would not)
    x = [-127.0] + [f32((i - 16) * 3.5 + 0.25 * (i % 3 == 0)) for i in range(1, 32)]
    amax = max(abs(v) for v in x)
    d = f32(amax / 127)
    inv = f32(1.0 / d)
    q = [int(round_half_away(f32(v * inv))) for v in x]
    want = struct.pack('<e', d) + struct.pack('<32b', *q)
    got = quantize(c, 'q8_0', x)
    c.check('quantize q8_0 of a hand-computed block', got == want,
            'got %s want %s' % (got.hex(), want.hex()))

    # and dequantize gives d * q back
    rc, out, err = c.harness('dequantize', 'q8_0', 1, 32, stdin=want)
    d16 = struct.unpack('<e', struct.pack('<e', d))[0]
    back = struct.unpack('<32f', out) if rc == 0 else []
    c.check('dequantize q8_0', rc == 0 and all(b == f32(d16 * v) for b, v in zip(back, q)),
            err)

    # two rows at once: each row quantized on its own
    y = [f32(v * 3) for v in x]
    rc, out, err = c.harness('quantize', 'q8_0', 2, 32, stdin=struct.pack('<64f', *(x + y)))
    c.check('quantize q8_0 works row by row',
            rc == 0 and out[:34] == want and out[34:] == quantize(c, 'q8_0', y), err)

    # sizes: Q4_K rows are 144 bytes per 256 values
    out = quantize(c, 'q4_K', [math.sin(i) for i in range(512)])
    c.check('quantize q4_K row size', len(out) == 2 * 144, str(len(out)))
    rc, _, _ = c.harness('quantize', 'q4_0', 1, 30, stdin=b'\0' * 120)
    c.check('quantize rejects a row that is not whole blocks', rc == 1, str(rc))
    rc, _, _ = c.harness('quantize', 'q4_0', 1, 32, stdin=b'\0' * 100)
    c.check('quantize rejects short input', rc == 1, str(rc))
    rc, _, _ = c.harness('quantize', 'no_such_type', 1, 32)
    c.check('quantize rejects an unknown type', rc == 2, str(rc))


def check_load(c, rng):
    model = c.work('zero-layers.gguf')
    kvs, tensors, w = tiny_llama(rng, zero_layers=True)
    write_gguf(model, kvs, tensors)

    info = c.harness_json('load a tiny llama', 'load', model)
    if info is not None:
        c.check('load reports the hparams',
                (info['n_vocab'], info['n_embd'], info['n_layer'], info['arch'], info['pre'])
                == (N_VOCAB, N_EMBD, N_LAYER, 'llama', None), json.dumps(info))
        n_params = sum(math.prod(ne) for _, ne, _ in tensors)
        c.check('load reports n_params', info['n_params'] == n_params,
                '%s != %d' % (info['n_params'], n_params))

    garbage = c.work('garbage.gguf')
    with open(garbage, 'wb') as f:
        f.write(b'GGUF' + bytes(rng.randrange(256) for _ in range(200)))
    rc, out, err = c.harness('load', garbage)
    c.check('load fails on garbage (exit 1)', rc == 1 and out == b'', 'exit %d' % rc)
    c.check('a failure shows llama.cpp\'s log', 'gguf' in err, err)

    with open(model, 'rb') as f:
        data = f.read()
    for name, cut in (('metadata', 100), ('tensor data', len(data) - 1000)):
        path = c.work('truncated-%s.gguf' % name.replace(' ', '-'))
        with open(path, 'wb') as f:
            f.write(data[:cut])
        rc, _, _ = c.harness('load', path)
        c.check('load fails on a file truncated in its %s' % name, rc == 1, 'exit %d' % rc)

    rc, _, _ = c.harness('load', c.work('does-not-exist.gguf'))
    c.check('load fails on a missing file', rc == 1, 'exit %d' % rc)
    return model, w


def close(a, b, tol=1e-4):
    return abs(a - b) <= tol * (1.0 + abs(b))


def check_logits(c, rng, model, w):
    tokens = [3, 17, 3, 47, 0]
    want = [zero_layer_logits(w, t)[0] for t in tokens]

    res = c.harness_json('logits as JSON', 'logits', model, '--tokens', ','.join(map(str, tokens)))
    if res is not None:
        got = res['logits']
        ok = (res['n_tokens'], res['n_vocab'], len(got)) == (len(tokens), N_VOCAB, len(tokens))
        bad = [(i, k, got[i][k], want[i][k]) for i in range(len(tokens)) for k in range(N_VOCAB)
               if ok and not close(got[i][k], want[i][k])]
        c.check('logits of every position = output @ rms_norm(embedding)', ok and not bad,
                str(bad[:5]))

    out = c.work('logits.f32')
    res = c.harness_json('logits --out', 'logits', model, '--tokens', ','.join(map(str, tokens)),
                         '--out', out, '--threads', 2)
    if res is not None:
        with open(out, 'rb') as f:
            raw = f.read()
        ok = len(raw) == 4 * len(tokens) * N_VOCAB
        got = struct.unpack('<%df' % (len(raw) // 4), raw)
        bad = [(i, k) for i in range(len(tokens)) for k in range(N_VOCAB)
               if ok and not close(got[i * N_VOCAB + k], want[i][k])]
        c.check('logits --out writes [n_tokens x n_vocab] float32', ok and not bad, str(bad[:5]))

    rc, _, _ = c.harness('logits', model, '--tokens', '1,%d' % N_VOCAB)
    c.check('logits rejects a token outside the vocabulary', rc == 1, 'exit %d' % rc)

    # LoRA on output.weight: logits += scale * alpha / rank * B (A h)
    rank, alpha = 4, 8.0
    adapters = []
    for k in range(2):
        a = [rng.uniform(-0.5, 0.5) for _ in range(N_EMBD * rank)]
        b = [rng.uniform(-0.5, 0.5) for _ in range(rank * N_VOCAB)]
        path = c.work('lora-%d.gguf' % k)
        write_gguf(path, [('general.architecture', GGUF_STR, 'llama'),
                          ('general.type', GGUF_STR, 'adapter'),
                          ('adapter.type', GGUF_STR, 'lora'),
                          ('adapter.lora.alpha', GGUF_F32, alpha)],
                   [('output.weight.lora_a', [N_EMBD, rank], a),
                    ('output.weight.lora_b', [rank, N_VOCAB], b)])
        adapters.append((path, f32_list(a), f32_list(b)))
    scales = [0.75, -0.5]

    def with_lora(token, used):
        logits, h = zero_layer_logits(w, token)
        for (path, a, b), s in used:
            ah = matvec(a, rank, N_EMBD, h)
            delta = matvec(b, N_VOCAB, rank, ah)
            logits = [v + s * alpha / rank * dv for v, dv in zip(logits, delta)]
        return logits

    for used in ([(adapters[0], scales[0])], list(zip(adapters, scales))):
        argv = ['logits', model, '--tokens', ','.join(map(str, tokens))]
        for (path, _, _), s in used:
            argv += ['--lora', path, '--lora-scale', repr(s)]
        res = c.harness_json('logits with %d LoRA adapter(s)' % len(used), *argv)
        if res is not None:
            bad = [(i, k) for i, t in enumerate(tokens) for k, v in enumerate(with_lora(t, used))
                   if not close(res['logits'][i][k], v)]
            c.check('logits with %d LoRA adapter(s) = base + scale*alpha/r*BAh' % len(used),
                    not bad, str(bad[:5]))

    bad_lora = c.work('lora-bad.gguf')
    write_gguf(bad_lora, [('general.architecture', GGUF_STR, 'llama'),
                          ('general.type', GGUF_STR, 'adapter'),
                          ('adapter.type', GGUF_STR, 'lora')],
               [('output.weight.lora_a', [N_EMBD + 1, rank], [0.0] * ((N_EMBD + 1) * rank)),
                ('output.weight.lora_b', [rank, N_VOCAB], [0.0] * (rank * N_VOCAB))])
    rc, _, _ = c.harness('logits', model, '--tokens', '1', '--lora', bad_lora)
    c.check('logits fails on a LoRA of the wrong shape', rc == 1, 'exit %d' % rc)

    # a model with real layers: position i must not see tokens after i
    layered = c.work('layered.gguf')
    kvs, tensors, _ = tiny_llama(rng, zero_layers=False)
    write_gguf(layered, kvs, tensors)
    r1 = c.harness_json('logits of a model with layers', 'logits', layered, '--tokens', '5,6,7')
    r2 = c.harness_json('logits of a model with layers', 'logits', layered, '--tokens', '5,6,8')
    if r1 is not None and r2 is not None:
        same = all(close(a, b, 1e-5) for i in range(2)
                   for a, b in zip(r1['logits'][i], r2['logits'][i]))
        differ = any(not close(a, b, 1e-3) for a, b in zip(r1['logits'][2], r2['logits'][2]))
        c.check('logits are causal (earlier positions ignore later tokens)', same and differ)
        z = zero_layer_logits(w, 5)[0]
        c.check('a model with layers is not the zero-layer one',
                any(not close(a, b, 1e-3) for a, b in zip(r1['logits'][0], z)))
    return layered, tensors


def check_dump(c):
    path = c.work('dump-fixture.gguf')
    kvs = [('general.architecture', GGUF_STR, 'llama'),
           ('t.u8', GGUF_U8, 255), ('t.i8', GGUF_I8, -128), ('t.u16', GGUF_U16, 65535),
           ('t.i16', GGUF_I16, -32768), ('t.u32', GGUF_U32, 4294967295),
           ('t.i32', GGUF_I32, -2147483648), ('t.f32', GGUF_F32, 0.1),
           ('t.bool', GGUF_BOOL, True), ('t.u64', GGUF_U64, 2 ** 64 - 1),
           ('t.i64', GGUF_I64, -2 ** 63), ('t.f64', GGUF_F64, 1 / 3),
           ('t.f32.inf', GGUF_F32, float('-inf')),
           ('t.str.escapes', GGUF_STR, 'q"b\\s\n\t\x01\x7f é 🦙'),
           ('t.str.bad', GGUF_STR, b'ok\xff\xc3'),
           ('t.arr.i32', GGUF_ARR, (GGUF_I32, list(range(-3, 17)))),
           ('t.arr.str', GGUF_ARR, (GGUF_STR, ['a', '', 'x\ny', b'\xfe'] + ['s%d' % i for i in range(20)])),
           ('t.arr.bool', GGUF_ARR, (GGUF_BOOL, [True, False])),
           ('t.arr.empty', GGUF_ARR, (GGUF_F32, []))]
    tensors = [('b.weight', [3, 2], [1.0] * 6), ('a.weight', [5], [2.0] * 5),
               ('c.weight', [4, 1, 2], [0.0] * 8)]
    head = write_gguf(path, kvs, tensors)

    def expect_value(vtype, value, full):
        if vtype == GGUF_ARR:
            etype, items = value
            shown = items if full else items[:16]
            return {'type': TYPE_NAME[etype], 'n': len(items),
                    'values': [expect_value(etype, v, full) for v in shown]}
        if vtype == GGUF_STR and isinstance(value, bytes):
            try:
                return value.decode('utf-8')
            except UnicodeDecodeError:
                return {'hex': value.hex(), 'lossy': value.decode('utf-8', 'replace')}
        if vtype == GGUF_F32:
            v = f32(value)
            return v if math.isfinite(v) else ('-Infinity' if v < 0 else 'Infinity')
        return value

    for full in (False, True):
        argv = ['dump', path] + (['--full'] if full else [])
        got = c.harness_json('dump%s' % (' --full' if full else ''), *argv)
        if got is None:
            continue
        want_kv = [{'key': k, 'type': TYPE_NAME[t], 'value': expect_value(t, v, full)}
                   for k, t, v in kvs]
        bad = [(g, x) for g, x in zip(got['kv'], want_kv) if g != x]
        c.check('dump%s: every KV in file order, typed, escaped' % (' --full' if full else ''),
                len(got['kv']) == len(kvs) and not bad, str(bad[:3]))
    if got is not None:
        want_t, off = [], 0
        for name, ne, values in tensors:
            want_t.append({'name': name, 'type': 'f32', 'ne': ne, 'offset': off,
                           'size': 4 * len(values)})
            off += 4 * len(values) + (-4 * len(values) % ALIGN)
        c.check('dump: tensors in file order with ne, offset, size', got['tensors'] == want_t,
                '%s != %s' % (got['tensors'], want_t))
        c.check('dump: header', (got['version'], got['alignment'], got['data_offset'],
                                 got['n_kv'], got['n_tensors'])
                == (3, 32, head, len(kvs), len(tensors)), str(got))


def check_model_quantize(c, layered, tensors):
    out = c.work('layered-q8_0.gguf')
    rc, _, err = c.harness('model-quantize', layered, out, 'Q8_0')
    c.check('model-quantize Q8_0', rc == 0, err[-2000:])
    if rc != 0:
        return
    dump = c.harness_json('dump of the quantized model', 'dump', out)
    info = c.harness_json('load of the quantized model', 'load', out)
    if dump is None or info is None:
        return
    kv = {e['key']: e['value'] for e in dump['kv']}
    types = {t['name']: t['type'] for t in dump['tensors']}
    c.check('model-quantize: file_type 7, 2D weights q8_0, norms f32',
            kv.get('general.file_type') == 7 and types['blk.0.attn_q.weight'] == 'q8_0'
            and types['blk.1.ffn_down.weight'] == 'q8_0' and types['output_norm.weight'] == 'f32',
            '%s %s' % (kv.get('general.file_type'), types))
    # its bytes are what `quantize q8_0` makes of the same rows
    t = next(t for t in dump['tensors'] if t['name'] == 'blk.0.attn_q.weight')
    with open(out, 'rb') as f:
        f.seek(dump['data_offset'] + t['offset'])
        got = f.read(t['size'])
    values = next(v for n, _, v in tensors if n == 'blk.0.attn_q.weight')
    rc, want, err = c.harness('quantize', 'q8_0', N_EMBD, N_EMBD,
                              stdin=struct.pack('<%df' % len(values), *values))
    c.check('model-quantize and quantize agree on a tensor', rc == 0 and got == want, err)


def llama3_vocab_gguf(path, tok_dir):
    with open(os.path.join(tok_dir, 'tokenizer.json'), encoding='utf-8') as f:
        tj = json.load(f)
    vocab = dict(tj['model']['vocab'])
    added = {t['id']: t for t in tj['added_tokens']}
    for i, t in added.items():
        vocab[t['content']] = i
    n = max(vocab.values()) + 1
    tokens = [''] * n
    for s, i in vocab.items():
        tokens[i] = s
    # token types as convert_hf_to_gguf writes them: 1 normal, 3 control, 4 user-defined
    types = [(3 if added[i]['special'] else 4) if i in added else 1 for i in range(n)]
    merges = [m if isinstance(m, str) else ' '.join(m) for m in tj['model']['merges']]
    kvs = llama_hparams() + [
        ('tokenizer.ggml.model', GGUF_STR, 'gpt2'),
        ('tokenizer.ggml.pre', GGUF_STR, 'llama-bpe'),
        ('tokenizer.ggml.tokens', GGUF_ARR, (GGUF_STR, tokens)),
        ('tokenizer.ggml.token_type', GGUF_ARR, (GGUF_I32, types)),
        ('tokenizer.ggml.merges', GGUF_ARR, (GGUF_STR, merges)),
        ('tokenizer.ggml.bos_token_id', GGUF_U32, vocab['<|begin_of_text|>']),
        ('tokenizer.ggml.eos_token_id', GGUF_U32, vocab['<|eot_id|>']),
        ('tokenizer.ggml.add_bos_token', GGUF_BOOL, True)]
    write_gguf(path, kvs, [])
    return vocab


def hf_tokenize(c, tok_dir, texts):
    p = subprocess.run([c.args.node, c.args.hf_tokenize, '--deps', c.args.deps, tok_dir],
                       input=json.dumps(texts).encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError('hf-tokenize: exit %d: %s' % (p.returncode, p.stderr.decode()))
    return json.loads(p.stdout)


def check_tokenizers(c):
    tok_dir = os.path.join(c.args.deps, 'tokenizers', 'llama3_1')
    with open(os.path.join(tok_dir, 'tokenizer.json'), encoding='utf-8') as f:
        vocab = json.load(f)['model']['vocab']
    bos = 128000
    # ids read from the vocabulary by hand: "Hello" is one token, " world"
    # is "Ġworld" in byte-level BPE
    hello, world = vocab['Hello'], vocab['\u0120world']
    c.check('llama3_1 vocabulary has the expected ids', (hello, world) == (9906, 1917),
            str((hello, world)))
    got = hf_tokenize(c, tok_dir, ['Hello', 'Hello world', ''])
    c.check('hf-tokenize llama3_1', got == [[bos, 9906], [bos, 9906, 1917], [bos]], str(got))

    qwen = hf_tokenize(c, os.path.join(c.args.deps, 'tokenizers', 'qwen3'), ['Hello', '<|im_end|>'])
    c.check('hf-tokenize qwen3 (no BOS, special token parsed)', qwen == [[9707], [151645]],
            str(qwen))

    gguf = c.work('llama3-vocab.gguf')
    llama3_vocab_gguf(gguf, tok_dir)
    texts = ['Hello', 'Hello world', '', ' leading space', 'numbers 1234567 and 3.14',
             '<|begin_of_text|>hi<|eot_id|>', 'tabs\tand\nnew\n\nlines  ', "don't I'LL",
             'ü 日本語 🦙', 'a\u0000b']
    got = c.harness_json('tokenize (vocab only)', 'tokenize', gguf,
                         stdin=json.dumps(texts).encode())
    if got is not None:
        want = hf_tokenize(c, tok_dir, texts)
        bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
        c.check('llama.cpp and HF tokenize the same', len(got) == len(texts) and not bad,
                str(bad[:3]))
        c.check('tokenize "Hello" by hand', got[0] == [bos, 9906], str(got[0]))
    rc, _, _ = c.harness('tokenize', gguf, stdin=b'["unterminated')
    c.check('tokenize rejects input that is not a JSON array of strings', rc == 1, str(rc))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--harness', required=True)
    ap.add_argument('--deps', required=True)
    ap.add_argument('--node', default='node')
    ap.add_argument('--hf-tokenize', required=True)
    ap.add_argument('--workdir', required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    c = Checker(args)
    rng = random.Random(20250301)
    check_f16(c)
    check_bf16(c)
    check_q8_0(c)
    model, w = check_load(c, rng)
    layered, tensors = check_logits(c, rng, model, w)
    check_model_quantize(c, layered, tensors)
    check_dump(c)
    check_tokenizers(c)

    print('%d passed, %d failed' % (c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == '__main__':
    sys.exit(main())
