"""The array configurations the RTL regression simulates, one Verilator build each.

Builds dominate the suite's time, so instead of the full shape x bits cross product the list covers
every shape (1x1, 2x2, 4x4, 4x8, 8x3, 8x8), every width (2, 4, 8, 16) for activations and for
weights, mixed activation/weight widths, no protection and every protection variant (clamp and zero
policies, act and acc domains, per-layer and per-channel bounds), k_max = 64 and the
default k_max = 1024 (where K = 1024 with extreme operands proves the accumulator cannot overflow,
at 8 and at 16 bits). The `_shift` variants are the shift-only requantization datapath (requant="shift",
the pow2 format) on a 1x1, a 2x2 16-bit, a mixed-width 4x8 and the 8x8 8-bit array.
"""

from hdl_gen import ArrayConfig

SIM_CONFIGS = {
    "1x1_a2w2_acc": ArrayConfig(1, 1, 2, 2, k_max=64, protection="range:clamp:acc:layer"),
    "2x2_a16w16_k1024_pc": ArrayConfig(2, 2, 16, 16, k_max=1024, protection="range", per_channel_bounds=True),
    "4x4_a4w4_none": ArrayConfig(4, 4, 4, 4, k_max=64, protection="none"),
    "4x8_a8w16_none": ArrayConfig(4, 8, 8, 16, k_max=64, protection="none"),
    "8x3_a4w2_pc_zero": ArrayConfig(8, 3, 4, 2, k_max=64, protection="range:zero:act:channel"),
    "3x4_a8w8_acc_zero_pc": ArrayConfig(3, 4, 8, 8, k_max=64, protection="range:zero:acc:channel"),
    "8x8_a8w8_k1024": ArrayConfig(8, 8, 8, 8, k_max=1024, protection="range"),
    "1x1_a2w2_shift": ArrayConfig(1, 1, 2, 2, k_max=64, protection="range", requant="shift"),
    "2x2_a16w16_k1024_pc_shift": ArrayConfig(
        2, 2, 16, 16, k_max=1024, protection="range", per_channel_bounds=True, requant="shift"
    ),
    "4x8_a8w16_none_shift": ArrayConfig(4, 8, 8, 16, k_max=64, protection="none", requant="shift"),
    "8x8_a8w8_k1024_shift": ArrayConfig(8, 8, 8, 8, k_max=1024, protection="range", requant="shift"),
}
