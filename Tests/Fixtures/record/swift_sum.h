/* C functions with entry sites, called from a Swift program (swift_main.swift). */
long record_fixture_square(long x);
long record_fixture_sum_squares(long count);
