"""Renderers: rich tables, trees and progress for people, deterministic JSON for machines, hexdumps.

Takes the data the lower layers return and formats it; computes nothing about dumps.
"""
