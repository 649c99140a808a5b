print("hello from the python app")
