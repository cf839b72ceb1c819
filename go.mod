module github.com/azdo-keda-scaler/azdo-keda-scaler

go 1.26.8

require (
	github.com/google/uuid v1.6.0
	github.com/microsoft/azure-devops-go-api/azuredevops/v7 v7.1.1-0.20241014080628-3045bdf43455
	github.com/sirupsen/logrus v1.10.2
	golang.org/x/time v0.16.0
)

require golang.org/x/sys v0.48.0 // indirect
