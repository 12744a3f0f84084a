"""OpenAI-compatible serving of any LLM back end (`openk2 serve`) and the terminal chat (`openk2 chat`).

    from openk2.serve.app import create_app                 # the FastAPI app over an in-process engine
    from openk2.serve.background import BackgroundServer    # the app on a loopback port in a thread

Nothing is imported here, so that `openk2 serve --help` does not load torch and FastAPI.
"""
