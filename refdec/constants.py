"""Normative constants of the refdec codec, version 1 (spec clauses 4 to 9).

Every number that the decoding process depends on is defined here once and
named after the clause that defines it.
"""

# Clause 6.1: bitstream identification.
MAGIC = b"RDEC"
VERSION = 1

# Clause 5.2: limits.
MAX_WIDTH = 8192
MAX_HEIGHT = 8192
MAX_PIXELS = 1 << 25
MAX_CHANNELS = 2048  # C_y, C_z and every layer's outputs (weight dimension 0, before D2S)
MAX_RATES = 64  # rate points R of a model

# Clause 5.1: architecture (reference channel counts are informative).
LATENT_CHANNELS = 128  # informative: C_y of the test model (refcodec); decoding reads C_y from the model file
HYPER_CHANNELS = 64  # informative: C_z of the test model (refcodec); decoding reads C_z from the model file
Y_STRIDE = 16  # clause 5.4: image samples per latent position, each way
Z_STRIDE = 64  # clause 5.4: image samples per hyper-latent position, each way
NUM_MIXTURES = 3  # K
CONTEXT_KERNELS = (3, 5, 7)
WAVEFRONT_SLOPE = 4  # clause 7.5: wavefront index t = x + 4*y
NUM_GATHER_LAYERS = 7

# Clause 4.4: activation conventions.
LEAKY_SHIFT = 3  # LeakyReLU negative slope 2^-3
ACT16_MAX = (1 << 15) - 1  # largest symmetric clamp bound for 16-bit activations
CONTEXT_INPUT_MAX = 255  # 9-bit context-model input: Clip3(-255, 255, y_hat)
ACCUMULATOR_LIMIT = 1 << 31  # clause 4.5 / 9.5: |acc| < 2^31
MAX_SHIFT = 27  # clause 4.4 / 9.3: layer shifts s in 0..27, so Round2 shifts by s + 3 <= 30
MAX_INV_GAIN_SHIFT = 27  # clause 9.2: G of clause 7.11 in 0..27
MAX_ROUND2_BITS = 30  # informative: the bound of clause 4.2 (n <= 30), for tests; no step tests it

# Clause 5.3: latent ranges.
Y_MAX = (1 << 14) - 1
Z_MAX = (1 << 14) - 1

# Clauses 7.8 and 7.9: mixture-parameter fixed-point formats, windows, CDFs; clause 10 tables.
MEAN_FRAC_BITS = 6  # means in units of 2^-6
LOGIT_ONE = 1 << 8  # linearised softmax: 1.0 == 256
WEIGHT_BITS = 14  # mixture weights sum to at most 2^14
NUM_SCALES = 160  # scale index 0..159
SCALE_INDEX_FRAC_BITS = 4  # clause 7.8: sidx = Round2(P, 4), P in units of 1/16 of a scale step
SCALE_MIN = 0.11  # informative: generating formula of the scale tables
SCALE_STEPS_PER_OCTAVE = 16  # informative: generating formula of the scale tables
INV_SCALE_BITS = 12  # INV_SCALE[k] = round(2^12 / sigma_k)
SCALE_Q_BITS = 8  # SCALE_Q[k] = round(2^8 * sigma_k)
MEAN_DIFF_MAX = (1 << 15)  # |d| clamp before the multiply by INV_SCALE
PHI_FRAC_BITS = 8  # Gaussian CDF table step 2^-8
PHI_RANGE = 8  # table covers t in [-8, 8]
PROB_BITS = 16  # coding precision: frequencies total 2^16
WINDOW_TAIL = 6  # coding window covers +-6 sigma around each component mean
MAX_HALF_WINDOW = 64  # clause 7.9: at most 2*64+1 window symbols + escape
MAX_ESCAPE_PREFIX = 14  # clause 7.10: the unary prefix k of an escape is at most 14

# Clause 8: range coder.
RC_TOP = 1 << 24
RC_INIT_BYTES = 4  # clause 8.2: V is the payload's first 4 bytes, so a payload has at least 4 (clause 6.2)
