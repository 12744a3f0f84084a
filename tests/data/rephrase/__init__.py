"""Tests of openk2.data.rephrase."""
