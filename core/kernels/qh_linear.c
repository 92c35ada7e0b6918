/* qh_linear.c - being written */
