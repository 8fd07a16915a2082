/* cuda_layout.cu: being written (issue 12) */
