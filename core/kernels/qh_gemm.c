/* qh_gemm.c - being written */
