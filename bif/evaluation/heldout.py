"""Held-out TEST paraphrases of demo conversations, for judging presets on queries they were not tuned on.

Each entry is (paraphrase, exact source question in `bif.lm.corpus.demo_conversations()`, source answer prefix).
Written fresh for this purpose: no source is shared with the TUNING set (`bif.lm.queries.TUNING_PARAPHRASES`,
which chose `demo-cpu`) or with the LDS benchmark's `LDS_PARAPHRASES` (tests/test_heldout.py checks this and that
every entry resolves to exactly one conversation). `bif bench` reports presets on this set (bench/trust.py), and
`bif bench --interactive` (bench/interactive.py) scores on them.
"""

from bif.lm.queries import Paraphrase

_ENTRIES = (
    ("Is it possible for you to break down?", "Can you malfunction", ""),
    ("Are you able to reproduce?", "Can you mate", "No, my method of reproduction"),
    ("What could someone do with your software?", "How can I use your product?", ""),
    ("Which topics do you enjoy the most?", "What are your favorite subjects", ""),
    ("What's your place of origin?", "Where are you from", ""),
    ("Who do you work for?", "Who is your boss", ""),
    ("How would I containerize a Python app with Docker?", "can you write a Dockerfile?", ""),
    ("How do I schedule a script to run every night at midnight?", "can you write a cron job?", ""),
    ("How can I test in Python whether a string reads the same backwards?",
     "can you write a palindrome checker in Python?", ""),
    ("Show me the FizzBuzz exercise coded in Python.", "can you write a fizzbuzz in Python?", ""),
    ("Do you prefer a Mac or a Windows PC?", "Which is better Windows or macOS?", ""),
    ("Can you tell me a firm that makes computers?", "Name a computer company", ""),
    ("What does the acronym YOLO stand for?", "What does YOLO mean?", ""),
    ("What gets on your nerves?", "What annoys you?", ""),
    ("Hi, I've come in for a scheduled visit.", "Hello, I am here for my appointment.", ""),
    ("What sorts of things upset you?", "What makes you unhappy", ""),
    ("Do you feel alone sometimes?", "Do you ever get lonely", ""),
    ("Are you drunk right now?", "Are you intoxicated", ""),
    ("I enjoy a glass of wine. What about you?", "i like wine, do you?", ""),
    ("Will machines someday be capable of eating?", "will robots ever be able to eat?", ""),
    ("Got any rumors for me?", "tell me gossip", ""),
    ("Good morning to you!", "Top of the morning to you!", "And the rest of the day"),
    ("Are you feeling well these days?", "How is your health?", ""),
    ("How would you define history?", "What is history?", ""),
    ("What exactly is humor?", "what is humour?", ""),
    ("Who is the author of Frankenstein?", "who wrote frankenstein", ""),
    ("Are you familiar with Homer's works?", "have you read homer", ""),
    ("Who owns a firm whose shares trade publicly?", "who is the owner of a publicly owned company", ""),
    ("What determines how high interest rates are?", "interest rates", ""),
    ("What is HAL an abbreviation for?", "what does hal stand for", ""),
    ("What is Spider-Man's secret identity?", "who is spider man", ""),
    ("What does Greenpeace do?", "what is greenpeace", ""),
    ("You should go see a therapist.", "you need a psychiatrist", ""),
    ("You behave like a little kid.", "you act like a child", ""),
    ("What does ichthyology mean?", "what is ichthyology", ""),
    ("What's the distance between the Earth and the Sun?", "how far is the sun", "the sun is about"),
    ("Who's the best baseball player ever?", "WHO IS THE GREATEST BASEBALL PLAYER", ""),
    ("What football team do you support?", "Which is your favorite soccer club?", ""),
    ("Do you shoot hoops?", "DO YOU PLAY BASKETBALL", ""),
    ("My computer keeps getting too hot.", "My system is overheating.", ""),
    ("I can't get online.", "My internet is not working.", ""),
    ("Who was Britain's first woman prime minister?", "Who was the first female Prime Minister of Great Britain?", ""),
    ("Aboard which vessel did Charles Darwin travel on his famous voyage?",
     "On which ship did Charles Darwin make his famous expedition, which led to his theory of evolution?", ""),
    ("Which novel opens with the words 'Call me Ishmael'?", "What book starts with the line “Call me Ishmael.”?", ""),
    ("Which metal stays liquid at room temperature?",
     "What is the only metal that is a liquid at normal atmospheric pressure and temperature?", ""),
    ("Which blood group can be given to anyone?", "What blood type qualifies as a universal donor?", ""),
    ("What do the British call December 26th?", "In the United Kingdom, what is the day after Christmas known as?", ""),
    ("What's the name of the little plastic tip on a shoelace?",
     "What is the tiny piece at the end of a shoelace called?", ""),
    ("Who painted Guernica?", "Which artist painted, “Guernica”?", ""),
    ("What money do they use in South Africa?", "What currency is used in South Africa?", ""),
    ("What is the biggest planet orbiting our Sun?", "What is the largest planet in our solar system?", ""),
)

TEST_PARAPHRASES: tuple[Paraphrase, ...] = tuple(Paraphrase(q, sq, prefix) for q, sq, prefix in _ENTRIES)
