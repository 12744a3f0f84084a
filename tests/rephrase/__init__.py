"""Tests of openk2.rephrase."""
