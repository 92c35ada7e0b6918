/* qh_dropout.c - being written */
