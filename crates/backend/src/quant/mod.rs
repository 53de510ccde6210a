//! Quantized block layouts (filled in by the quant work).
