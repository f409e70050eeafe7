"""An independent Philox4x32-10 in numpy, and the dropout masks ptb_lm's kernel must draw with it (the formula in
ptb_lm/dropout.py): the oracle of tests/test_dropout.py and tests/test_regularisers.py."""
import numpy as np


def philox(counters, key):
    """Philox4x32-10 in numpy: counters (B, 4) uint32, key (2,) -> (B, 4) uint32 (Salmon et al. 2011)."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    low = np.uint64(0xffffffff)
    for round_ in range(10):
        if round_:
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & low, (k1 + np.uint64(0xBB67AE85)) & low
        p0, p1 = c[0] * np.uint64(0xD2511F53), c[2] * np.uint64(0xCD9E8D57)
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & low, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & low]
    return np.stack(c, axis=1).astype(np.uint32)


def expected_mask(shape, axes, key, site, p):
    """The mask the formula in ptb_lm/dropout.py gives, broadcastable to ``shape``."""
    mask_shape = tuple(1 if a in [x % len(shape) for x in axes] else n for a, n in enumerate(shape))
    size = int(np.prod(mask_shape))
    blocks = (size + 3) // 4
    counters = np.zeros((blocks, 4), dtype=np.uint32)
    counters[:, 0] = np.arange(blocks)
    counters[:, 1], counters[:, 2], counters[:, 3] = key[2], key[3], site
    words = philox(counters, key[:2]).reshape(-1)[:size]
    p32 = np.float32(p)
    threshold = min(np.floor(np.float64(p32) * 2.0 ** 32), 2.0 ** 32 - 1)
    scale = np.float32(1) / (np.float32(1) - p32)  # MXNet's rescale, in float32
    return np.where(words >= threshold, scale, np.float32(0)).astype(np.float32).reshape(mask_shape)
