"""Default prompts of the steering experiment.

Tang et al. prompt with the multilingual Vicuna questions (translated by GPT-4), which
are not redistributable here. These are five short open questions and instructions
written for lsn_mech, the same five in each language (en, fr, es, zh, ja, vi, id, the
languages of the paper). They are everyday topics, with no mathematics or code, as in
the paper's selection. Each was checked to be identified as its own language by
`lsn_mech.experiments.language_id` among these seven languages.

English meaning of the five:

1. What are the benefits of drinking water every day?
2. Describe your favourite season and explain why you like it.
3. How do I make a good cup of tea?
4. Why is it important to learn a foreign language?
5. Give some advice to a student who is starting university.
"""

from __future__ import annotations

DEFAULT_PROMPTS: dict[str, list[str]] = {
    "en": [
        "What are the benefits of drinking water every day?",
        "Describe your favourite season and explain why you like it.",
        "How do I make a good cup of tea?",
        "Why is it important to learn a foreign language?",
        "Give some advice to a student who is starting university.",
    ],
    "fr": [
        "Quels sont les bienfaits de boire de l'eau tous les jours ?",
        "Décrivez votre saison préférée et expliquez pourquoi vous l'aimez.",
        "Comment préparer une bonne tasse de thé ?",
        "Pourquoi est-il important d'apprendre une langue étrangère ?",
        "Donnez quelques conseils à un étudiant qui commence l'université.",
    ],
    "es": [
        "¿Cuáles son los beneficios de beber agua todos los días?",
        "Describe tu estación favorita y explica por qué te gusta.",
        "¿Cómo se prepara una buena taza de té?",
        "¿Por qué es importante aprender un idioma extranjero?",
        "Dale algunos consejos a un estudiante que empieza la universidad.",
    ],
    "zh": [
        "每天喝水有什么好处？",
        "描述一下你最喜欢的季节，并解释你为什么喜欢它。",
        "怎样才能泡一杯好茶？",
        "为什么学习外语很重要？",
        "请给刚上大学的学生一些建议。",
    ],
    "ja": [
        "毎日水を飲むことにはどんな利点がありますか？",
        "あなたの好きな季節について説明し、なぜそれが好きなのかを教えてください。",
        "おいしいお茶はどうやって入れますか？",
        "外国語を学ぶことはなぜ大切なのですか？",
        "大学に入ったばかりの学生にアドバイスをしてください。",
    ],
    "vi": [
        "Uống nước mỗi ngày có những lợi ích gì?",
        "Hãy mô tả mùa yêu thích của bạn và giải thích vì sao bạn thích nó.",
        "Làm thế nào để pha một tách trà ngon?",
        "Tại sao học ngoại ngữ lại quan trọng?",
        "Hãy cho một sinh viên mới vào đại học vài lời khuyên.",
    ],
    "id": [
        "Apa saja manfaat minum air setiap hari?",
        "Jelaskan musim favoritmu dan mengapa kamu menyukainya.",
        "Bagaimana cara membuat secangkir teh yang enak?",
        "Mengapa belajar bahasa asing itu penting?",
        "Berikan beberapa saran kepada mahasiswa yang baru mulai kuliah.",
    ],
}
"""Five open questions per language, written for lsn_mech (see the module docstring)."""


def default_prompts(languages: list[str] | None = None) -> dict[str, list[str]]:
    """Copies of the default prompts of ``languages`` (default: all seven)."""
    chosen = list(DEFAULT_PROMPTS) if languages is None else list(languages)
    missing = [x for x in chosen if x not in DEFAULT_PROMPTS]
    if missing:
        from lsn_mech.errors import MissingLanguageError

        raise MissingLanguageError(
            f"No default prompts for {', '.join(missing)} (there are prompts for "
            f"{', '.join(DEFAULT_PROMPTS)}); pass your own prompts={{language: [...]}}."
        )
    return {x: list(DEFAULT_PROMPTS[x]) for x in chosen}
