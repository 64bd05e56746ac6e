"""The Visual Symptom Generator (docs/METHOD.md section 1): ask an LLM for a class's visual symptoms.

Modules, one job each:
    llm       chat-completions client for any OpenAI-compatible endpoint
    cache     on-disk cache of LLM answers
    run_memory  what one run learns of its endpoints: the models that refused a temperature
    shapes    find the list in an answer, whatever its shape (bullets, table, sentence, JSON, ...)
    parse     turn an LLM answer into a clean list of symptoms
    grid      4x4 grid of 16 class images for the vision stage
    agree     which stage-1 symptoms the stage-2 answer agrees with
    generate  the two stages end to end: `generate_pack(config)` and `write_pack(...)`
    folder    which pack each class of a data folder uses, and which still need generating
    rank      score every symptom on the user's training images with the frozen backbone; prune
    wording   warn about symptoms that do not look English or only name a disease
"""
