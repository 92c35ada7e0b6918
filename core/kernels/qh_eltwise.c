/* qh_eltwise.c - being written */
