"""Symptom packs shipped with vip (YAML files beside this one)."""
