"""The C++ main of a cpp build (testbenches/sim.py, clock "cpp"): cocotb's Verilator main with the
model pointer kept and a few C functions added that Python calls through ctypes
(testbenches/cpp_clock.py): N clock cycles, settle, bulk buffer writes and reads, and whole tile runs
with their flips (`quasar_run_flips`, `quasar_run_batch`). This module only writes that source file.
"""

from __future__ import annotations

from pathlib import Path

CPP_HOOK = "    std::unique_ptr<Vtop> top(new Vtop(\"\"));\n"
CPP_MAIN_EXTRA = r"""
// ---- QuaSAR: a clock stepped from Python (testbenches/array_tb.py, clock "cpp"), through ctypes ----
// Python calls these from inside a cocotb callback, between two evaluations of the main loop, so the
// model is never re-entered. Simulated time does not advance; the design has no delays. VPI writes
// (queued as inertial puts) take effect at the next call, before its first evaluation.
extern "C" {
// `n` clock cycles (rising edge, falling edge); with stop_on_done, stop after the first rising edge
// that leaves `done` high. Returns the number of rising edges simulated.
int quasar_cycles(int n, int stop_on_done) {
    Vtop* top = quasar_top;
    VerilatedVpi::doInertialPuts();  // cocotb's deposits on Verilator are inertial: apply them first
    for (int i = 0; i < n; ++i) {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        if (stop_on_done && top->done) return i + 1;
    }
    return n;
}
// Settle the model after VPI writes (no clock edge); returns `done`.
int quasar_settle(void) {
    VerilatedVpi::doInertialPuts();
    quasar_top->eval();
    return quasar_top->done;
}
int quasar_done(void) { return quasar_top->done; }
// Deposit `count` words (`words32` 32-bit chunks each, least significant first) into the memory `name`
// from index 0, skipping those whose `changed` flag is 0: one call per buffer instead of a VPI write
// from Python per word. Returns the number written, or -1 when `name` or an element is unknown.
int quasar_put_words(const char* name, int count, int words32, const uint32_t* data, const uint8_t* changed) {
    vpiHandle mem = vpi_handle_by_name(const_cast<PLI_BYTE8*>(name), nullptr);
    if (!mem) return -1;
    std::vector<s_vpi_vecval> vec(words32);
    s_vpi_value value;
    value.format = vpiVectorVal;
    value.value.vector = vec.data();
    int written = 0;
    for (int i = 0; i < count; ++i) {
        if (changed && !changed[i]) continue;
        vpiHandle el = vpi_handle_by_index(mem, i);
        if (!el) return -1;
        for (int w = 0; w < words32; ++w) {
            vec[w].aval = data[i * words32 + w];
            vec[w].bval = 0;
        }
        vpi_put_value(el, &value, nullptr, vpiNoDelay);
        vpi_release_handle(el);
        ++written;
    }
    vpi_release_handle(mem);
    return written;
}
// ---- every flip of a tile run in one call (ArrayTB.run_flips): no Python between the flips ----
static std::vector<vpiHandle> quasar_handles;
static std::vector<int> quasar_widths;
// A register's id for quasar_run_flips (its VPI handle kept for the process's life); -1 when unknown.
int quasar_handle(const char* name) {
    vpiHandle h = vpi_handle_by_name(const_cast<PLI_BYTE8*>(name), nullptr);
    if (!h) return -1;
    quasar_handles.push_back(h);
    quasar_widths.push_back(vpi_get(vpiSize, h));
    return static_cast<int>(quasar_handles.size()) - 1;
}
int quasar_width(int id) { return quasar_widths.at(id); }
// Invert bit `bit` of register `id` now (a deposit between two edges, as a VPI write from Python).
static void quasar_flip_bit(int id, int bit) {
    vpiHandle h = quasar_handles[id];
    s_vpi_vecval vec[8];
    int words = (quasar_widths[id] + 31) / 32;
    s_vpi_value value;
    value.format = vpiVectorVal;
    vpi_get_value(h, &value);
    for (int w = 0; w < words && w < 8; ++w) {
        vec[w].aval = value.value.vector[w].aval;
        vec[w].bval = 0;
    }
    vec[bit / 32].aval ^= 1u << (bit % 32);
    value.value.vector = vec;
    vpi_put_value(h, &value, nullptr, vpiNoDelay);
}
static void quasar_put_int(int id, int value) {
    s_vpi_value v;
    v.format = vpiIntVal;
    v.value.integer = value;
    vpi_put_value(quasar_handles[id], &v, nullptr, vpiNoDelay);
}
// A tile run of reduction length k (ports `k` and `start` by id) with `n` single-bit flips sorted by
// cycle: flip i inverts bit bits[i] of register ids[i] right after edge cycles[i] (flips of one
// register and cycle are one deposit). Same semantics as ArrayTB._start_cpp and the Python loop of
// ArrayTB._run_cpp: a flip lands unless `done` rose at or before its edge; `done` raised by a deposit
// itself ends the run at that edge; flips after `max_cycles` are dropped. Returns the edges from
// edge 0 to `done` (or max_cycles); *finished is 1 when `done` rose.
int quasar_run_flips(int k_id, int start_id, int k, int n, const int32_t* cycles, const int32_t* ids,
                     const int32_t* bits, int max_cycles, int* finished) {
    // edge 0 samples start (ArrayTB._start_cpp)
    quasar_put_int(k_id, k);
    quasar_put_int(start_id, 1);
    quasar_cycles(1, 0);
    quasar_put_int(start_id, 0);
    int cur = 0;
    *finished = 1;
    for (int i = 0; i < n; ++i) {
        if (cycles[i] > max_cycles) break;
        if (cycles[i] > cur) {
            cur += quasar_cycles(cycles[i] - cur, 1);
            if (quasar_top->done) return cur;
        }
        quasar_flip_bit(ids[i], bits[i]);
        bool last = i + 1 == n || cycles[i + 1] != cycles[i] || ids[i + 1] != ids[i];
        if (last && quasar_settle()) return cur;  // the deposit itself raised done (a control register)
    }
    if (cur < max_cycles) cur += quasar_cycles(max_cycles - cur, 1);
    if (quasar_top->done) return cur;
    *finished = 0;
    return max_cycles;
}
// Several tile runs of the loaded tile back to back (ArrayTB.run_flip_batch): before run r, the
// words of memory `mem_id` flagged in changed[r*k ..] take xwords[r*k*words32 ..]; its flips are
// cycles/ids/bits[foff[r] .. foff[r+1]); after it, port `out_id` goes to out[r*out_words32 ..],
// port `viol_id` (if >= 0) to viol[r], and fin[r], cyc[r] as quasar_run_flips gives them. Stops
// after the first run that did not end exactly at edge `span` (the array then needs a reset) and
// returns how many runs it did.
int quasar_run_batch(int k_id, int start_id, int k, int nruns, int mem_id, int words32, const uint32_t* xwords,
                     const uint8_t* changed, const int32_t* foff, const int32_t* cycles, const int32_t* ids,
                     const int32_t* bits, int max_cycles, int span, int out_id, int out_words32, uint32_t* out,
                     int viol_id, uint32_t* viol, int32_t* fin, int32_t* cyc) {
    static std::vector<vpiHandle> elems;
    static int elems_of = -1;
    vpiHandle mem = quasar_handles[mem_id];
    if (elems_of != mem_id) {
        elems.clear();
        elems_of = mem_id;
    }
    std::vector<s_vpi_vecval> vec(words32 > out_words32 ? words32 : out_words32);
    s_vpi_value value;
    for (int r = 0; r < nruns; ++r) {
        for (int kk = 0; kk < k; ++kk) {
            if (!changed[r * k + kk]) continue;
            while (static_cast<int>(elems.size()) <= kk)
                elems.push_back(vpi_handle_by_index(mem, static_cast<PLI_INT32>(elems.size())));
            for (int w = 0; w < words32; ++w) {
                vec[w].aval = xwords[(static_cast<size_t>(r) * k + kk) * words32 + w];
                vec[w].bval = 0;
            }
            value.format = vpiVectorVal;
            value.value.vector = vec.data();
            vpi_put_value(elems[kk], &value, nullptr, vpiNoDelay);
        }
        int done = 0;
        cyc[r] = quasar_run_flips(k_id, start_id, k, foff[r + 1] - foff[r], cycles + foff[r], ids + foff[r],
                                  bits + foff[r], max_cycles, &done);
        fin[r] = done;
        value.format = vpiVectorVal;
        vpi_get_value(quasar_handles[out_id], &value);
        for (int w = 0; w < out_words32; ++w)
            out[static_cast<size_t>(r) * out_words32 + w] = value.value.vector[w].aval;
        if (viol_id >= 0) {
            vpi_get_value(quasar_handles[viol_id], &value);
            viol[r] = value.value.vector[0].aval;
        }
        if (!done || cyc[r] != span) return r + 1;
    }
    return nruns;
}
// Read the signal `name` into `out` (`words32` chunks, least significant first); -1 when unknown.
int quasar_get_words(const char* name, int words32, uint32_t* out) {
    vpiHandle h = vpi_handle_by_name(const_cast<PLI_BYTE8*>(name), nullptr);
    if (!h) return -1;
    s_vpi_value value;
    value.format = vpiVectorVal;
    vpi_get_value(h, &value);
    for (int w = 0; w < words32; ++w) out[w] = value.value.vector[w].aval;
    vpi_release_handle(h);
    return 0;
}
}
"""


def cpp_main(root: Path) -> Path:
    """cocotb's Verilator main with the model pointer kept and CPP_MAIN_EXTRA's functions added."""
    import cocotb_tools.config

    src = (cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp").read_text()
    if src.count(CPP_HOOK) != 1:
        raise RuntimeError("cocotb's verilator.cpp changed: cannot add the C++ clock (testbenches/sim.py)")
    head = "#include <cstdint>\n#include <vector>\nstatic Vtop* quasar_top = nullptr;\n"
    text = src.replace(CPP_HOOK, CPP_HOOK + "    quasar_top = top.get();\n").replace(
        '#include "Vtop.h"\n', '#include "Vtop.h"\n' + head) + CPP_MAIN_EXTRA
    path = root / "quasar_verilator_main.cpp"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path
